-- enqueue.lua: writes each new task's record with its queue (or schedule) entry. A uuid that
-- exists is left alone, so a producer may retry an enqueue whose reply it lost. Wakes an
-- idle worker.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, flow (`1` when the tasks carry a flow field, `` when none of the batch
--          has one), then per task: uuid, name, priority, args, created ms, delay ms, and with
--          flow fields a flow flag (`` for none; `1` when seven flow fields follow: unique
--          key, hold ms after the end, debounce ms, concurrency key, rate key, named queue,
--          throttle ms, each `` or 0 when not set)
-- Named queues: a task of queue `mail` is queued in `prios:mail` and `q:mail:<priority>`
-- (its record has `qn`), and `mail` joins the set `queues` (for stats).
-- Unique keys: `uniq` (key -> the uuid holding it); the holder's record has `uk`
-- (`<hold ms>:<key>`, read when it is final to free the key).
-- A key is held while its task is new, retry or running, or finished less than hold ms ago;
-- a task whose key is held is not written, and its position and the holder are returned
-- (with debounce, a holder that has not started takes the new arguments and start time).
-- Reply:   {1, {position (from 0), holder uuid, ...}}, or a WRONGTYPE error (and nothing
--          written) when a task's key, a queue key or `uniq` holds another type than qtasks
--          keeps there; refused up front (OOM) when Redis is full
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local bad_key = check_keys('prios', 'sched', 'wake', 'ix:new')
if bad_key then return redis.error_reply(bad_key) end
-- The tasks: how many, where each starts in ARGV (`at`, only for a batch with flow fields;
-- else task n starts at n * 6 - 3), and the flow fields of those that have them.
local count, at, flows = (#ARGV - 2) / 6, nil, {}
local flowing = false
if ARGV[2] == '1' then
  -- Eight fields per task: the six, the flow flag, and the seven flow fields that follow a
  -- `1` (unique key, hold ms, debounce ms, concurrency key, rate key, queue, throttle ms).
  at = {}
  local i = 3
  while i + 6 <= #ARGV do
    at[#at + 1] = i
    if ARGV[i + 6] == '1' then
      flows[#at] = {ARGV[i + 7], tonumber(ARGV[i + 8]) or 0, tonumber(ARGV[i + 9]) or 0,
        ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], tonumber(ARGV[i + 13]) or 0}
      flowing = true
      i = i + 14
    else
      i = i + 7
    end
  end
  count = #at
end
-- First the checks, so that a batch is written whole or not at all: a task's key that holds
-- another type than a record, or a queue key that holds another type than a list, is an error.
-- `fresh`: the uuids to write (not stored yet, first time in this batch).
local fresh, checked, foreign_keys = {}, {}, {}
local keys = {}
for n = 1, count do keys[n] = T .. ARGV[at and at[n] or n * 6 - 3] end
-- One EXISTS for the whole batch: when none of its keys exists (new uuids, the usual case),
-- no key needs a look of its own.
local existing = 0
local k = 1
while k <= #keys do
  local j = math.min(k + 999, #keys)
  existing = existing + redis.call('EXISTS', unpack(keys, k, j))
  k = j + 1
end
for n = 1, count do
  local i = at and at[n] or n * 6 - 3
  local id, prio = ARGV[i], ARGV[i + 2]
  if existing == 0 or redis.call('EXISTS', keys[n]) == 0 then
    if fresh[id] == nil then fresh[id] = n end
  else
    local kind = redis.call('TYPE', keys[n])['ok']
    if kind ~= 'hash' then foreign_keys[#foreign_keys + 1] = keys[n] .. ' (a ' .. kind .. ')' end
  end
  -- Each queue key once per call (`checked[queue][prio]`, no string built per task).
  local queue = flowing and flows[n] and flows[n][6] or ''
  local seen = checked[queue]
  if not seen then seen = {}; checked[queue] = seen end
  if not seen[prio] then
    seen[prio] = true
    local _, lane = lanes(queue)
    local qkey = lane .. prio
    local kind = redis.call('TYPE', qkey)['ok']
    if kind ~= 'none' and kind ~= 'list' then
      foreign_keys[#foreign_keys + 1] = qkey .. ' (a ' .. kind .. ')'
    end
  end
end
if #foreign_keys > 0 then
  return redis.error_reply('WRONGTYPE ' .. table.concat(foreign_keys, ', ', 1,
    math.min(#foreign_keys, 5)) .. ': another type than qtasks keeps there: something ' ..
    'else writes into this app\'s keys. No task of this batch was stored.')
end
-- Whether the holder of a unique key still holds it (held `hold` ms past its end; with a
-- throttle, `thr` ms from its enqueue whatever its status); with debounce (`deb` ms), a holder
-- that has not started takes `args` and starts `deb` ms from now.
local function holds(holder, hold, deb, args, thr)
  local r = redis.pcall('HMGET', T .. holder, 's', 'u', 'c', 'p', 'n', 'a', 'at', 'qn')
  if type(r) ~= 'table' or r.err or not r[1] then return false end
  if thr > 0 then return (tonumber(r[3]) or 0) + thr > now end
  local s = r[1]
  -- Claimed: its `run` entry is there (only asked when the record alone cannot tell).
  local running = s == 'process' or ((s == 'new' or s == 'retry') and deb > 0 and
    redis.pcall('HEXISTS', P .. 'run', holder) == 1)
  if not (s == 'new' or s == 'retry' or s == 'process' or running) then
    local ended = tonumber(r[2] or r[3]) or 0
    if ended + hold <= now then return false end
  end
  if deb > 0 and s == 'new' and not running then
    local prio = int32(r[4])
    if prio and r[5] and r[6] then
      -- Out of the ready queue if it got there, into the schedule at its new time.
      local _, lane = lanes(r[8])
      redis.call('LREM', lane .. fmt(prio), 1, ready_entry(holder, tonumber(r[7]) or 0, prio,
        r[5], r[6]))
    end
    redis.call('HSET', T .. holder, 'a', args)
    redis.call('ZADD', P .. 'sched', fmt(now + deb), holder)
  end
  return true
end
-- The unique keys first, before any record is written: a `uniq` key of another type fails
-- the batch whole (the keys taken so far name records that do not exist: free). A new key
-- is taken in one command; a taken one is checked, and a holder written earlier in this
-- batch is found the same way (its key names it; its record is checked once written, below).
local found, holders, in_batch, uk = {}, {}, {}, {}
if flowing then
  local batch_holder = {}
  for n = 1, count do
    local i = at and at[n] or n * 6 - 3
    local id, flow = ARGV[i], flows[n]
    if fresh[id] == n and flow and flow[1] ~= '' then
      local key = flow[1]
      local taken = redis.pcall('HSETNX', P .. 'uniq', key, id)
      if type(taken) == 'table' and taken.err then
        return redis.error_reply('WRONGTYPE ' .. foreign(P .. 'uniq', 'a hash of unique keys') ..
          '. No task of this batch was stored.')
      end
      local holder = taken == 0 and (batch_holder[key] or redis.call('HGET', P .. 'uniq', key))
      if holder and holder ~= id and
          (batch_holder[key] or holds(holder, flow[2], flow[3], ARGV[i + 3], flow[7])) then
        holders[n] = holder
        -- A debounced duplicate of a holder of this batch gives it its arguments below.
        if batch_holder[key] and flow[3] > 0 then in_batch[n] = true end
        found[#found + 1] = n - 1
        found[#found + 1] = holder
      else
        if holder then redis.call('HSET', P .. 'uniq', key, id) end
        uk[n] = fmt(flow[2]) .. ':' .. key
        batch_holder[key] = id
      end
    end
  end
end
-- Ready entries per queue and priority (`groups[queue][prio]`), in first-seen order.
local groups, order = {}, {}
-- Debounced duplicates of this batch give their arguments to the holder written below.
local last_args = {}
for n = 1, count do
  local i = at and at[n] or n * 6 - 3
  local id, name, prio, args, delay = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 5])
  local flow = flowing and flows[n]
  local write = fresh[id] == n and not holders[n]
  if in_batch[n] then last_args[holders[n]] = {args, flow[3]} end
  if write then
    -- `u` (updated) defaults to `c` and `at` (attempts) to 0 until they change.
    if flowing and uk[n] then
      redis.call('HSET', T .. id, 'n', name, 'p', prio, 'a', args, 's', 'new', 'c', ARGV[i + 4],
        'uk', uk[n])
    else
      redis.call('HSET', T .. id, 'n', name, 'p', prio, 'a', args, 's', 'new', 'c', ARGV[i + 4])
    end
    local queue = ''
    if flow then
      if flow[4] ~= '' then redis.call('HSET', T .. id, 'ck', flow[4]) end
      if flow[5] ~= '' then redis.call('HSET', T .. id, 'rk', flow[5]) end
      if flow[6] ~= '' then
        queue = flow[6]
        redis.call('HSET', T .. id, 'qn', queue)
        redis.call('SADD', P .. 'queues', queue)
      end
    end
    index(id, nil, 'new', ARGV[i + 4])
    if delay > 0 then
      redis.call('ZADD', P .. 'sched', fmt(now + delay), id)
    else
      local per = groups[queue]
      if not per then per = {}; groups[queue] = per end
      local g = per[prio]
      if not g then g = {}; per[prio] = g; order[#order + 1] = {queue, prio} end
      g[#g + 1] = ready_entry(id, '0', prio, name, args)
    end
  end
end
for holder, last in pairs(last_args) do
  -- (Written in this batch: pending in the schedule, as a debounced task is.)
  redis.call('HSET', T .. holder, 'a', last[1])
  redis.call('ZADD', P .. 'sched', 'XX', fmt(now + last[2]), holder)
end
for _, o in ipairs(order) do
  local prios, lane = lanes(o[1])
  chunked('LPUSH', lane .. o[2], groups[o[1]][o[2]])
  redis.call('ZADD', prios, o[2], o[2])
end
wake()
flush_index()
return {1, found}
