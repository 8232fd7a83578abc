-- One admin write of the runtime consumers, in one step: the hash it changes (and
-- the tombstone of a revocation or a cleared override, which a republication after
-- a data loss never writes over), the version bump, and the change-log entry that
-- carries the version and the change, trimmed to the retention.
-- KEYS: keys, tiers, revoked, cleared, version, log, stamps (one hash slot).
-- ARGV: op (add, revoke, revoke_held, tier, untier), key id or consumer, the key's
-- record, the tier name or (revoke_held) the key's consumer, the log's retention,
-- and for a change made in another region (region_sync/consumers.rs) that
-- region's name, which its entry carries so that no region passes it on again,
-- and when it was made there (ms). A consumer's tier takes the latest change made
-- anywhere: stamps keeps when each consumer's tier last changed (Redis's clock of
-- the region that made it), and a region's change older than that is dropped.
-- Returns the version the write made; 0 when revoke_held found no such key, or a
-- region's change is here already (or, a key's, revoked here).
local keys, tiers, revoked, cleared, version, log, stamps =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local op, id, value, from = ARGV[1], ARGV[2], ARGV[3], ARGV[5] or ''
if op == 'tier' or op == 'untier' then
  local stamp = tonumber(redis.call('HGET', stamps, id)) or -1
  local made = tonumber(ARGV[6]) or 0
  if from == '' then
    -- An admin write here always takes effect: later than anything seen.
    local t = redis.call('TIME')
    made = math.max(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), stamp + 1)
  elseif made < stamp then
    return 0
  end
  redis.call('HSET', stamps, id, made)
end
if from ~= '' then
  local same
  if op == 'add' then
    same = redis.call('HEXISTS', revoked, id) == 1 or redis.call('HGET', keys, id) == value
  elseif op == 'revoke' then
    same = redis.call('HEXISTS', revoked, id) == 1 and redis.call('HEXISTS', keys, id) == 0
  elseif op == 'tier' then
    same = redis.call('HGET', tiers, id) == value
  elseif op == 'untier' then
    same = redis.call('HEXISTS', tiers, id) == 0 and redis.call('HEXISTS', cleared, id) == 1
  end
  if same then return 0 end
end
if op == 'add' then
  redis.call('HSET', keys, id, value)
elseif op == 'revoke' then
  -- The record goes into the entry: readers find the key by its consumer (a
  -- region's revocation brings its record, for a key not yet added here).
  value = redis.call('HGET', keys, id) or value
  redis.call('HDEL', keys, id)
  redis.call('HSET', revoked, id, '1')
elseif op == 'revoke_held' then
  -- Asked of an instance that does not hold the key (still loading, or behind the
  -- log): only a key Redis holds for the named consumer is revoked.
  value = redis.call('HGET', keys, id)
  if not value or cjson.decode(value).consumer ~= ARGV[3] then
    return 0
  end
  redis.call('HDEL', keys, id)
  redis.call('HSET', revoked, id, '1')
  op = 'revoke'
elseif op == 'tier' then
  redis.call('HSET', tiers, id, value)
  redis.call('HDEL', cleared, id)
elseif op == 'untier' then
  redis.call('HDEL', tiers, id)
  redis.call('HSET', cleared, id, '1')
else
  return redis.error_reply('unknown op ' .. op)
end
local v = redis.call('INCR', version)
if from ~= '' then
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], '*', 'v', v, 'op', op, 'id', id, 'val', value, 'from', from)
else
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[4], '*', 'v', v, 'op', op, 'id', id, 'val', value)
end
return v
