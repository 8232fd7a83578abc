-- Settles one instance's reports for a batch of keys' cluster budgets and grants
-- their next leases, atomically. Each hash holds the pool (tokens no instance
-- holds), when it last refilled, the usage of the current and previous minute, and
-- per instance "lease asked report_by_ms": its lease, its demand per round, and
-- when it will report again at the latest. Time is the server's, so instance
-- clocks do not matter. One call settles many keys (in a cluster, one: keys of a
-- call share a slot), which spares Redis a command's overhead per key.
-- KEYS: the budget hashes.
-- With several regions (region_sync/), the hash also holds this region's share of
-- the tier (rs: its pool refills at rs of the rate, up to rs of the burst), the
-- region's view of the world's level (w at wat: refilled at the whole rate, less
-- what every region is known to have spent; o the same less this region's
-- spending only, which a region meeting this one for the first time charges
-- its own view with), the tokens this region spent since
-- the hash's epoch e (c, a grow-only counter the other regions merge by maximum),
-- the tier (r, b) and the instances' interval (li) for the region sync, and one
-- "p:<region>" field per region that shares the key. A key new to the region
-- starts on a region's share of the tier, 1 / regions, and one region interval of
-- that share's rate; a key shared, or with its pool half spent, or refused, is
-- named for the region sync (at most twice a region interval).
-- ARGV: instance, stale_ms, interval_ms, max_rounds (the longest a report may be
-- put off), regions (0 without regions), region_interval_ms, then per key: rate,
-- burst, used, asked (per round since its last report), need (the largest cost
-- refused).
local me, stale = 'i:' .. ARGV[1], tonumber(ARGV[2])
local interval, max_rounds = tonumber(ARGV[3]), tonumber(ARGV[4])
local regions, region_interval = tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute = math.floor(now / 60000)
local out = {}

local function settle(key, rate, burst, used, asked, need)
  local pool, at, win, win_used, prev_used = burst, now, minute, 0, 0
  local mine, others, demand = 0, 0, asked
  local rs, w, own, wat, spent, epoch, marked, peers, lapsed = 1, burst, burst, now, 0, nil, 0, 0, 0
  if regions > 0 then
    rs = 1 / regions
    pool = math.min(burst, rate * region_interval / 1000) * rs
  end
  -- The latest any other instance's lease is counted until: the hash outlives it.
  local others_until = now
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    if f == 'pool' then pool = tonumber(v)
    elseif f == 'at' then at = tonumber(v)
    elseif f == 'win' then win = tonumber(v)
    elseif f == 'wu' then win_used = tonumber(v)
    elseif f == 'pu' then prev_used = tonumber(v)
    elseif f == 'rs' then rs = tonumber(v)
    elseif f == 'w' then w = tonumber(v)
    elseif f == 'o' then own = tonumber(v)
    elseif f == 'wat' then wat = tonumber(v)
    elseif f == 'c' then spent = tonumber(v)
    elseif f == 'e' then epoch = v
    elseif f == 'xm' then marked = tonumber(v)
    elseif string.sub(f, 1, 2) == 'p:' then peers = peers + 1
    elseif f == me then
      mine = tonumber(string.match(v, '^(%S+)'))
    elseif string.sub(f, 1, 2) == 'i:' then
      local lease, want, report_by = string.match(v, '^(%S+) (%S+) (%S+)$')
      if lease == nil or now - tonumber(report_by) > stale then
        -- An instance silent past its report is gone: its lease is counted as spent.
        redis.call('HDEL', key, f)
        lapsed = lapsed + (tonumber(lease) or 0)
      else
        others = others + tonumber(lease)
        demand = demand + tonumber(want)
        others_until = math.max(others_until, tonumber(report_by))
      end
    end
  end
  -- Region fields left from a time with regions are not this one's.
  if regions == 0 then rs = 1 end
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
  pool = math.min(pool + rs * rate * math.max(now - at, 0) / 1000, rs * burst - others)
  pool = math.max(pool, -burst)
  local share = 0
  if demand > 0 then share = asked / demand end
  -- No instance holds more than twice its demand over the longest put-off (or two
  -- intervals of the rate, at least a token: what a new key is advanced): what a
  -- quiet key leaves in the pool stays there for the others.
  local most = math.max(2 * asked * max_rounds, 2 * rate * interval / 1000, 1)
  local lease = math.min(math.max(pool, 0) * share, most)
  -- A share too small for the request that was refused would admit nothing, ever:
  -- the pool lends the whole cost when it has it.
  if asked > 0 and lease < need and pool >= need then lease = need end
  pool = pool - lease
  -- The rounds the lease covers the demand for, twice over: the instance's next
  -- report is due then (or its lease lapses there), and its lease counts until
  -- then (plus `stale`); twice the rounds' interval, as a round also takes time.
  local rounds = 1
  if asked > 0 then rounds = math.max(1, math.min(max_rounds, math.floor(lease / (2 * asked)))) end
  local report_by = now + 2 * (rounds - 1) * interval
  redis.call('HSET', key, 'pool', tostring(pool), 'at', now, 'win', minute,
    'wu', tostring(win_used), 'pu', tostring(prev_used),
    me, tostring(lease) .. ' ' .. tostring(asked) .. ' ' .. report_by)
  local low = pool
  local due = 0
  if regions > 0 then
    -- A lapsed lease was spent as far as anyone knows: the world hears of it.
    local refill = rate * math.max(now - wat, 0) / 1000
    w = math.max(math.min(w + refill, burst) - used - lapsed, -burst)
    own = math.max(math.min(own + refill, burst) - used - lapsed, -burst)
    spent = spent + math.max(used, 0) + lapsed
    epoch = epoch or (now .. '.' .. ARGV[1])
    -- Shared, or its pool half spent (a key new here starts so: its first
    -- exchange tells whether another region shares it), or refused: the other
    -- regions must hear of it.
    local hot = pool < rs * burst / 2 or need > 0
    if ((peers > 0 and asked > 0) or hot) and now - marked >= region_interval / 2 then
      due = 1
      marked = now
    end
    redis.call('HSET', key, 'rs', tostring(rs), 'w', tostring(w), 'o', tostring(own), 'wat', now, 'c', tostring(spent),
      'e', epoch, 'xm', marked, 'r', tostring(rate), 'b', tostring(burst), 'li', interval)
    low = math.min(pool, w)
  end
  -- Kept until it would be full again (debt included) and every lease, this one's
  -- and the others', has gone stale.
  local counted = math.max(2 * (rounds - 1) * interval, others_until - now)
  redis.call('PEXPIRE', key, math.ceil((burst - low) / rate * 1000) + counted + 4 * stale)
  out[#out + 1] = tostring(lease)
  out[#out + 1] = tostring(share)
  out[#out + 1] = tostring(pool)
  out[#out + 1] = tostring(rounds)
  out[#out + 1] = tostring(due)
end

for k = 1, #KEYS do
  local a = 6 + (k - 1) * 5
  settle(KEYS[k], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]),
    tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]))
end
return out
