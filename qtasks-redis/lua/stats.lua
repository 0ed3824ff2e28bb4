-- stats.lua: the queue's counts.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix
-- Reply:   {{priority, ready, ...}, scheduled, running, dead_letter}, where the ready tasks
--          include the suspects (tasks whose worker vanished while running them, which run
--          alone), counted under their priority
--
-- Runs after prelude.lua (see its header).

local bad_key = check_keys('prios', 'sched', 'lease', 'dead', 'suspect')
if bad_key then return redis.error_reply(bad_key) end
local counts, order = {}, {}
for _, prio in ipairs(redis.call('ZRANGE', P .. 'prios', 0, -1)) do
  local n = redis.pcall('LLEN', P .. 'q:' .. prio)
  if type(n) == 'number' and int32(prio) then
    counts[prio] = n
    order[#order + 1] = prio
  end
end
for _, id in ipairs(redis.call('LRANGE', P .. 'suspect', 0, 9999)) do
  local p = is_uuid(id) and redis.pcall('HGET', T .. id, 'p')
  local prio = type(p) == 'string' and int32(p)
  if prio then
    local k = fmt(prio)
    if not counts[k] then
      counts[k] = 0
      order[#order + 1] = k
    end
    counts[k] = counts[k] + 1
  end
end
local ready = {}
for _, prio in ipairs(order) do
  ready[#ready + 1] = prio
  ready[#ready + 1] = counts[prio]
end
return {ready, redis.call('ZCARD', P .. 'sched'), redis.call('ZCARD', P .. 'lease'),
  redis.call('LLEN', P .. 'dead')}
