-- Publishes one batch of what an instance holds of the runtime consumers again, into
-- a Redis that lost data. Tombstones (revoked key ids, cleared overrides) are written
-- by every revocation (write.lua) and here with what this instance knows revoked,
-- and nothing tombstoned is put back: whichever instance repairs first, and whatever
-- it missed, a revocation stays revoked. Each key is one step with its tombstone's
-- check, so batches interleave safely with writes and other repairs.
-- KEYS: keys, tiers, revoked, cleared (one hash slot).
-- ARGV: the count of revoked ids and the ids; the count of keys and their (id,
-- record) pairs; the count of overrides and their (consumer, tier) pairs.
local keys, tiers, revoked, cleared = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local i = 1
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  redis.call('HDEL', keys, ARGV[i])
  redis.call('HSET', revoked, ARGV[i], '1')
  i = i + 1
end
-- The next counted (field, value) pairs into `hash`, never over what it holds nor
-- over a tombstone.
local function publish(hash, tombstones)
  local count = tonumber(ARGV[i]); i = i + 1
  for _ = 1, count do
    if redis.call('HEXISTS', tombstones, ARGV[i]) == 0 then
      redis.call('HSETNX', hash, ARGV[i], ARGV[i + 1])
    end
    i = i + 2
  end
end
publish(keys, revoked)
publish(tiers, cleared)
return 1
