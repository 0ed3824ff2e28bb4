-- enqueue.lua: writes each new task's record with its queue (or schedule) entry. A uuid that
-- exists is left alone, so a producer may retry an enqueue whose reply it lost. Wakes an
-- idle worker.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then per task: uuid, name, priority, args, created ms, delay ms, flow (``
--          for none; `1` when six flow fields follow: unique key, hold ms after the end,
--          debounce ms, concurrency key, rate key, named queue, each `` when not set)
-- Named queues: a task of queue `mail` is queued in `prios:mail` and `q:mail:<priority>`
-- (its record has `qn`), and `mail` joins the set `queues` (for stats).
-- Unique keys: `uniq` (key -> the uuid holding it), `uniq_of` (uuid -> `<hold ms>:<key>`).
-- A key is held while its task is new, retry or running, or finished less than hold ms ago;
-- a task whose key is held is not written, and its position and the holder are returned
-- (with debounce, a holder that has not started takes the new arguments and start time).
-- Reply:   {1, {position (from 0), holder uuid, ...}}, or a WRONGTYPE error (and nothing written) when a task's key or a queue key
--          holds another type than qtasks keeps there; refused up front (OOM) when Redis is
--          full
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local bad_key = check_keys('prios', 'sched', 'wake', 'ix:new')
if bad_key then return redis.error_reply(bad_key) end
-- First the checks, so that a batch is written whole or not at all: a task's key that holds
-- another type than a record, or a queue key that holds another type than a list, is an error.
-- `fresh`: the uuids to write (not stored yet, first time in this batch).
-- The tasks, parsed once: {id, name, prio, args, created, delay, flow fields or nil}.
local tasks = {}
do
  local i = 2
  while i + 6 <= #ARGV do
    local t = {ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], tonumber(ARGV[i + 5])}
    if ARGV[i + 6] == '1' then
      t[7] = {ARGV[i + 7], tonumber(ARGV[i + 8]) or 0, tonumber(ARGV[i + 9]) or 0, ARGV[i + 10],
        ARGV[i + 11], ARGV[i + 12]}
      i = i + 13
    else
      i = i + 7
    end
    tasks[#tasks + 1] = t
  end
end
local fresh, queues, foreign_keys = {}, {}, {}
local keys = {}
local flowing = false
for k, t in ipairs(tasks) do
  keys[k] = T .. t[1]
  if t[7] then flowing = true end
end
if flowing then
  bad_key = check_keys('uniq', 'uniq_of', 'run')
  if bad_key then return redis.error_reply(bad_key) end
end
-- One EXISTS for the whole batch: when none of its keys exists (new uuids, the usual case),
-- no key needs a look of its own.
local existing = 0
local k = 1
while k <= #keys do
  local j = math.min(k + 999, #keys)
  existing = existing + redis.call('EXISTS', unpack(keys, k, j))
  k = j + 1
end
for n, t in ipairs(tasks) do
  local id, prio = t[1], t[3]
  local queue = t[7] and t[7][6] or ''
  if existing == 0 or redis.call('EXISTS', keys[n]) == 0 then
    if fresh[id] == nil then fresh[id] = n end
  else
    local kind = redis.call('TYPE', keys[n])['ok']
    if kind ~= 'hash' then foreign_keys[#foreign_keys + 1] = keys[n] .. ' (a ' .. kind .. ')' end
  end
  local _, lane = lanes(queue)
  local qkey = lane .. prio
  if not queues[qkey] then
    queues[qkey] = true
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
-- Whether the holder of a unique key still holds it (held `hold` ms past its end); with
-- debounce (`deb` ms), a holder that has not started takes `args` and starts `deb` ms from
-- now.
local function holds(holder, hold, deb, args)
  local r = redis.pcall('HMGET', T .. holder, 's', 'u', 'c', 'p', 'n', 'a', 'at', 'qn')
  if type(r) ~= 'table' or r.err or not r[1] then return false end
  local running = redis.call('HEXISTS', P .. 'run', holder) == 1
  local s = r[1]
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
local groups, order, found = {}, {}, {}
for n, t in ipairs(tasks) do
  local id, name, prio, args, delay, flow = t[1], t[2], t[3], t[4], t[6], t[7]
  local write = fresh[id] == n
  if write and flow and flow[1] ~= '' then
    local key = flow[1]
    -- (A holder written earlier in this batch is found the same way: its record is there.)
    local holder = redis.call('HGET', P .. 'uniq', key)
    if holder and holder ~= id and holds(holder, flow[2], flow[3], args) then
      found[#found + 1] = n - 1
      found[#found + 1] = holder
      write = false
    else
      redis.call('HSET', P .. 'uniq', key, id)
      redis.call('HSET', P .. 'uniq_of', id, fmt(flow[2]) .. ':' .. key)
    end
  end
  if write then
    -- `u` (updated) defaults to `c` and `at` (attempts) to 0 until they change.
    redis.call('HSET', T .. id, 'n', name, 'p', prio, 'a', args, 's', 'new', 'c', t[5])
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
    index(id, nil, 'new', t[5])
    if delay > 0 then
      redis.call('ZADD', P .. 'sched', fmt(now + delay), id)
    else
      local lane = queue .. '\0' .. prio
      local g = groups[lane]
      if not g then g = {}; groups[lane] = g; order[#order + 1] = {lane, queue, prio} end
      g[#g + 1] = ready_entry(id, '0', prio, name, args)
    end
  end
end
for _, o in ipairs(order) do
  local prios, lane = lanes(o[2])
  chunked('LPUSH', lane .. o[3], groups[o[1]])
  redis.call('ZADD', prios, o[3], o[3])
end
wake()
flush_index()
return {1, found}
