-- stats.lua: the queue's counts.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix
-- Reply:   {{priority, ready, ...}, scheduled, running, dead_letter, {queue, ready, ...}},
--          where the ready tasks include the suspects (tasks whose worker vanished while
--          running them, which run alone), counted under their priority and queue; the
--          named queues are the members of `queues`
--
-- Runs after prelude.lua (see its header).

local bad_key = check_keys('prios', 'sched', 'lease', 'dead', 'suspect')
if bad_key then return redis.error_reply(bad_key) end
local counts, order = {}, {}
local per_queue, queue_order = {}, {}
local function count(prio, queue, n)
  if not counts[prio] then
    counts[prio] = 0
    order[#order + 1] = prio
  end
  counts[prio] = counts[prio] + n
  if not per_queue[queue] then
    per_queue[queue] = 0
    queue_order[#queue_order + 1] = queue
  end
  per_queue[queue] = per_queue[queue] + n
end
local names = {'default'}
local named = redis.pcall('SMEMBERS', P .. 'queues')
if type(named) == 'table' and not named.err then
  for _, q in ipairs(named) do names[#names + 1] = q end
end
for _, queue in ipairs(names) do
  local prios, lane = lanes(queue ~= 'default' and queue or nil)
  for _, prio in ipairs(redis.call('ZRANGE', prios, 0, -1)) do
    local n = redis.pcall('LLEN', lane .. prio)
    if type(n) == 'number' and int32(prio) and n > 0 then count(prio, queue, n) end
  end
end
for _, id in ipairs(redis.call('LRANGE', P .. 'suspect', 0, 9999)) do
  local r = is_uuid(id) and redis.pcall('HMGET', T .. id, 'p', 'qn')
  local prio = type(r) == 'table' and not r.err and int32(r[1])
  if prio then count(fmt(prio), r[2] or 'default', 1) end
end
local ready = {}
for _, prio in ipairs(order) do
  ready[#ready + 1] = prio
  ready[#ready + 1] = counts[prio]
end
local queues = {}
for _, queue in ipairs(queue_order) do
  queues[#queues + 1] = queue
  queues[#queues + 1] = per_queue[queue]
end
return {ready, redis.call('ZCARD', P .. 'sched'), redis.call('ZCARD', P .. 'lease'),
  redis.call('LLEN', P .. 'dead'), queues}
