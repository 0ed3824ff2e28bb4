-- enqueue.lua: writes each new task's record with its queue (or schedule) entry. A uuid that
-- exists is left alone, so a producer may retry an enqueue whose reply it lost. Wakes an
-- idle worker.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then per task: uuid, name, priority, args, created ms, delay ms
-- Reply:   1
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local groups, order = {}, {}
for i = 2, #ARGV, 6 do
  local id, prio, delay = ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 5])
  local key = T .. id
  if redis.call('EXISTS', key) == 0 then
    -- `u` (updated) defaults to `c` and `at` (attempts) to 0 until they change.
    redis.call('HSET', key, 'n', ARGV[i + 1], 'p', prio, 'a', ARGV[i + 3], 's', 'new',
      'c', ARGV[i + 4])
    if delay > 0 then
      redis.call('ZADD', P .. 'sched', fmt(now + delay), id)
    else
      local g = groups[prio]
      if not g then g = {}; groups[prio] = g; order[#order + 1] = prio end
      g[#g + 1] = id
    end
  end
end
for _, prio in ipairs(order) do
  chunked('LPUSH', P .. 'q:' .. prio, groups[prio])
  redis.call('ZADD', P .. 'prios', prio, prio)
end
wake()
return 1
