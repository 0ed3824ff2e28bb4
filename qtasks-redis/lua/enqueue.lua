-- enqueue.lua: writes each new task's record with its queue (or schedule) entry. A uuid that
-- exists is left alone, so a producer may retry an enqueue whose reply it lost. Wakes an
-- idle worker.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then per task: uuid, name, priority, args, created ms, delay ms
-- Reply:   1, or a WRONGTYPE error (and nothing written) when a task's key or a queue key
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
local fresh, queues, foreign_keys = {}, {}, {}
local keys = {}
for i = 2, #ARGV, 6 do keys[#keys + 1] = T .. ARGV[i] end
-- One EXISTS for the whole batch: when none of its keys exists (new uuids, the usual case),
-- no key needs a look of its own.
local existing = 0
local k = 1
while k <= #keys do
  local j = math.min(k + 999, #keys)
  existing = existing + redis.call('EXISTS', unpack(keys, k, j))
  k = j + 1
end
k = 0
for i = 2, #ARGV, 6 do
  k = k + 1
  local id, prio = ARGV[i], ARGV[i + 2]
  if existing == 0 or redis.call('EXISTS', keys[k]) == 0 then
    if fresh[id] == nil then fresh[id] = i end
  else
    local kind = redis.call('TYPE', keys[k])['ok']
    if kind ~= 'hash' then foreign_keys[#foreign_keys + 1] = keys[k] .. ' (a ' .. kind .. ')' end
  end
  if not queues[prio] then
    queues[prio] = true
    local kind = redis.call('TYPE', P .. 'q:' .. prio)['ok']
    if kind ~= 'none' and kind ~= 'list' then
      foreign_keys[#foreign_keys + 1] = P .. 'q:' .. prio .. ' (a ' .. kind .. ')'
    end
  end
end
if #foreign_keys > 0 then
  return redis.error_reply('WRONGTYPE ' .. table.concat(foreign_keys, ', ', 1,
    math.min(#foreign_keys, 5)) .. ': another type than qtasks keeps there: something ' ..
    'else writes into this app\'s keys. No task of this batch was stored.')
end
local groups, order = {}, {}
for i = 2, #ARGV, 6 do
  local id, prio, delay = ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 5])
  if fresh[id] == i then
    -- `u` (updated) defaults to `c` and `at` (attempts) to 0 until they change.
    local name, args = ARGV[i + 1], ARGV[i + 3]
    redis.call('HSET', T .. id, 'n', name, 'p', prio, 'a', args, 's', 'new', 'c', ARGV[i + 4])
    index(id, nil, 'new', ARGV[i + 4])
    if delay > 0 then
      redis.call('ZADD', P .. 'sched', fmt(now + delay), id)
    else
      local g = groups[prio]
      if not g then g = {}; groups[prio] = g; order[#order + 1] = prio end
      g[#g + 1] = ready_entry(id, 0, prio, name, args)
    end
  end
end
for _, prio in ipairs(order) do
  chunked('LPUSH', P .. 'q:' .. prio, groups[prio])
  redis.call('ZADD', P .. 'prios', prio, prio)
end
wake()
flush_index()
return 1
