-- Settles one instance's reports for a batch of keys' cluster budgets and grants
-- their next leases, atomically. Each hash holds the pool (tokens no instance
-- holds), when it last refilled, the usage of the current and previous minute, and
-- per instance "lease asked seen_ms". Time is the server's, so instance clocks do
-- not matter. One call settles many keys (in a cluster, one: keys of a call share
-- a slot), which spares Redis a command's overhead per key.
-- KEYS: the budget hashes.
-- ARGV: instance, stale_ms, then per key: rate, burst, used, asked, need (the
-- largest cost refused).
local me, stale = 'i:' .. ARGV[1], tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute = math.floor(now / 60000)
local out = {}

local function settle(key, rate, burst, used, asked, need)
  local pool, at, win, win_used, prev_used = burst, now, minute, 0, 0
  local mine, others, demand = 0, 0, asked
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    if f == 'pool' then pool = tonumber(v)
    elseif f == 'at' then at = tonumber(v)
    elseif f == 'win' then win = tonumber(v)
    elseif f == 'wu' then win_used = tonumber(v)
    elseif f == 'pu' then prev_used = tonumber(v)
    elseif f == me then
      mine = tonumber(string.match(v, '^(%S+)'))
    else
      local lease, want, seen = string.match(v, '^(%S+) (%S+) (%S+)$')
      if lease == nil or now - tonumber(seen) > stale then
        -- A silent instance's lease is counted as spent.
        redis.call('HDEL', key, f)
      else
        others = others + tonumber(lease)
        demand = demand + tonumber(want)
      end
    end
  end
  if win ~= minute then
    if win == minute - 1 then prev_used = win_used else prev_used = 0 end
    win_used = 0
  end
  -- A report below zero (tokens given back after they were reported) refunds the
  -- pool; the minute's usage never goes below zero.
  win_used = math.max(win_used + used, 0)
  -- The old lease comes back, what was spent (advances included) goes; then refill
  -- so that the pool and every lease together never exceed the burst. Debt from
  -- advances is kept, down to one burst, and repaid from the refill.
  pool = pool + mine - used
  pool = math.min(pool + rate * math.max(now - at, 0) / 1000, burst - others)
  pool = math.max(pool, -burst)
  local share = 0
  if demand > 0 then share = asked / demand end
  local lease = math.max(pool, 0) * share
  -- A share too small for the request that was refused would admit nothing, ever:
  -- the pool lends the whole cost when it has it.
  if asked > 0 and lease < need and pool >= need then lease = need end
  pool = pool - lease
  redis.call('HSET', key, 'pool', tostring(pool), 'at', now, 'win', minute,
    'wu', tostring(win_used), 'pu', tostring(prev_used),
    me, tostring(lease) .. ' ' .. tostring(asked) .. ' ' .. now)
  -- Kept until it would be full again (debt included) and every lease has gone stale.
  redis.call('PEXPIRE', key, math.ceil((burst - pool) / rate * 1000) + 4 * stale)
  out[#out + 1] = tostring(lease)
  out[#out + 1] = tostring(share)
  out[#out + 1] = tostring(pool)
end

for k = 1, #KEYS do
  local a = 2 + (k - 1) * 5
  settle(KEYS[k], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]))
end
return out
