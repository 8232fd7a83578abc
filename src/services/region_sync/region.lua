-- The region sync's side of a key's budget hash (settle.lua has the instances'
-- side and describes the fields). One script, three uses:
-- read:     this region's state of each key, to send to the other regions;
-- exchange: run in another region's Redis: merges the sender's state into that
--           region's hash, if it has one, and answers its own;
-- merge:    back home, merges each region's answer, or for a region that could
--           not be reached, applies on_partition.
-- Merging a region's state: its spending counter is grow-only under its epoch,
-- so the view of the world's level is charged what the counter grew since it
-- was last seen, whatever order or how many times states arrive. At first sight
-- of a region (or a new epoch of it) the view is charged that region's own recent
-- spending: its level less only what it spent (o, refilled since); what a third
-- region spent comes from that region itself.
-- Then the region's share is its demand over every region's (fresh ones), and
-- its pool that share of the world's level less the leases out here; x records
-- that every region was reached once since the key's hash began (before that, a
-- region cut off may share the key unbeknown). While a
-- region that shares the key is cut off, the pool is left to refill at the share
-- on_partition sets, never reset from a view that misses that region's spending.
-- KEYS: the budget hashes.
-- ARGV read:     'read'
-- ARGV exchange: 'exchange', from, stale_ms, then per key: epoch, spent, demand, own level
-- ARGV merge:    'merge', on_partition, stale_ms, regions (n), their n names, then per
--                key and region: 'ok' epoch spent demand level | 'none' | 'cut', padded
--                to 5 values
-- Returns per key: epoch, spent, demand (tokens a second), own level; '' for a key with
-- no hash (for merge: its share and pool, or '' '').
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}

local function load(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local h = { peers = {}, leases = 0, asked = 0 }
  for i = 1, #flat, 2 do
    local f, v = flat[i], flat[i + 1]
    if string.sub(f, 1, 2) == 'i:' then
      local lease, want = string.match(v, '^(%S+) (%S+) %S+$')
      if lease then
        h.leases = h.leases + tonumber(lease)
        h.asked = h.asked + tonumber(want)
      end
    elseif string.sub(f, 1, 2) == 'p:' then
      local e, c, d, seen = string.match(v, '^(%S+) (%S+) (%S+) (%S+)$')
      h.peers[string.sub(f, 3)] = { e = e, c = tonumber(c), d = tonumber(d), seen = tonumber(seen) }
    else
      h[f] = v
    end
  end
  h.rate, h.burst = tonumber(h.r), tonumber(h.b)
  if not h.rate or not h.e then return nil end
  h.rs, h.c, h.pool = tonumber(h.rs), tonumber(h.c), tonumber(h.pool)
  h.cutset = {}
  for name in string.gmatch(h.cut or '', '%S+') do h.cutset[name] = true end
  -- The world's level, refilled to now.
  local refill = h.rate * math.max(now - tonumber(h.wat), 0) / 1000
  h.w = math.min(tonumber(h.w) + refill, h.burst)
  h.o = math.min((tonumber(h.o) or h.burst) + refill, h.burst)
  h.demand = h.asked * 1000 / tonumber(h.li)
  return h
end

local function state(h)
  out[#out + 1] = h.e
  out[#out + 1] = tostring(h.c)
  out[#out + 1] = tostring(h.demand)
  out[#out + 1] = tostring(h.o)
end

local function absorb(h, name, e, c, d, level)
  local seen = h.peers[name]
  if seen == nil or seen.e ~= e then
    h.w = h.w + math.min(level, h.burst) - h.burst
  elseif c > seen.c then
    h.w = h.w - (c - seen.c)
  end
  if seen ~= nil and seen.e == e then c = math.max(c, seen.c) end
  h.w = math.max(h.w, -h.burst)
  h.peers[name] = { e = e, c = c, d = d, seen = now }
end

-- The share and pool from every fresh region's demand; `cut` names the regions
-- not reached this time, `mode` what to do about a key they share. The pool is
-- reset from the view only by the region's own merge (`reset`), once a round with
-- every region's fresh answer: each region takes its share of about the same
-- level, where a reset at every exchange would take it again from a view that
-- misses what the others took meanwhile.
local function rebalance(key, h, stale, mode, cut, reset)
  local total, fresh, sharing, severed = h.demand, 0, 0, false
  -- A region cut off before the key was ever exchanged with it may share it.
  for name in pairs(cut) do
    if h.peers[name] == nil and h.x == nil then
      severed = true
      sharing = sharing + 1
    end
  end
  for name, p in pairs(h.peers) do
    if cut[name] then
      severed = true
      sharing = sharing + 1
    elseif now - p.seen > stale then
      h.peers[name] = nil
      redis.call('HDEL', key, 'p:' .. name)
    else
      fresh = fresh + 1
      sharing = sharing + 1
      total = total + p.d
    end
  end
  if severed then
    -- The pool is not reset from a view that misses a region's spending: it keeps
    -- what it refilled at the old share until now, under the new share's cap.
    local before = h.rs or 1
    h.pool = h.pool + before * h.rate * math.max(now - (tonumber(h.at) or now), 0) / 1000
    if mode == 'safe_share' then h.rs = 1 / (1 + sharing)
    elseif mode == 'allow' then h.rs = 1
    elseif mode == 'deny' then h.rs = 0
    end
    h.pool = math.max(math.min(h.pool, (h.rs or 1) * h.burst - h.leases), -h.burst)
  else
    h.x = now
    local before = h.rs or 1
    if total > 0 then h.rs = h.demand / total else h.rs = 1 / (1 + fresh) end
    if reset then
      h.pool = math.max(h.rs * h.w - h.leases, -h.burst)
    else
      h.pool = h.pool + before * h.rate * math.max(now - (tonumber(h.at) or now), 0) / 1000
      h.pool = math.max(math.min(h.pool, h.rs * h.burst - h.leases), -h.burst)
    end
  end
end

local function store(key, h, cut)
  local names = {}
  for name in pairs(cut) do names[#names + 1] = name end
  local fields = { 'rs', tostring(h.rs), 'pool', tostring(h.pool), 'at', now,
    'w', tostring(h.w), 'o', tostring(h.o), 'wat', now, 'cut', table.concat(names, ' '), 'm', h.m or 'last_share' }
  if h.x then
    fields[#fields + 1] = 'x'
    fields[#fields + 1] = h.x
  end
  for name, p in pairs(h.peers) do
    fields[#fields + 1] = 'p:' .. name
    fields[#fields + 1] = p.e .. ' ' .. tostring(p.c) .. ' ' .. tostring(p.d) .. ' ' .. p.seen
  end
  redis.call('HSET', key, unpack(fields))
end

if op == 'read' then
  for k = 1, #KEYS do
    local h = load(KEYS[k])
    if h then state(h) else for _ = 1, 4 do out[#out + 1] = '' end end
  end
elseif op == 'exchange' then
  local from, stale = ARGV[2], tonumber(ARGV[3])
  for k = 1, #KEYS do
    local a = 3 + (k - 1) * 4
    local h = load(KEYS[k])
    if h then
      -- The answer is this region's state before the merge: at a first sight
      -- each side adds the other's view to its own once.
      state(h)
      h.cutset[from] = nil
      absorb(h, from, ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]))
      -- A region this one found cut off stays so until this one reaches it again.
      rebalance(KEYS[k], h, stale, h.m or 'last_share', h.cutset, false)
      store(KEYS[k], h, h.cutset)
    else
      for _ = 1, 4 do out[#out + 1] = '' end
    end
  end
elseif op == 'merge' then
  local mode, stale, n = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
  local names = {}
  for i = 1, n do names[i] = ARGV[4 + i] end
  local base = 4 + n
  for k = 1, #KEYS do
    local h = load(KEYS[k])
    if h then
      local cut = {}
      for i = 1, n do
        local a = base + ((k - 1) * n + (i - 1)) * 5
        local status = ARGV[a + 1]
        if status == 'ok' then
          absorb(h, names[i], ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]))
        elseif status == 'none' and h.peers[names[i]] then
          h.peers[names[i]] = nil
          redis.call('HDEL', KEYS[k], 'p:' .. names[i])
        elseif status == 'cut' then
          cut[names[i]] = true
        end
      end
      rebalance(KEYS[k], h, stale, mode, cut, true)
      h.m = mode
      store(KEYS[k], h, cut)
      out[#out + 1] = tostring(h.rs)
      out[#out + 1] = tostring(h.pool)
    else
      out[#out + 1] = ''
      out[#out + 1] = ''
    end
  end
end
return out
