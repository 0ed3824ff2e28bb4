-- stats.lua: the queue's counts.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix
-- Reply:   {{priority, ready, ...}, scheduled, running, dead_letter}
--
-- Runs after prelude.lua (see its header).

local ready = {}
for _, prio in ipairs(redis.call('ZRANGE', P .. 'prios', 0, -1)) do
  ready[#ready + 1] = prio
  ready[#ready + 1] = redis.call('LLEN', P .. 'q:' .. prio)
end
return {ready, redis.call('ZCARD', P .. 'sched'), redis.call('ZCARD', P .. 'lease'),
  redis.call('LLEN', P .. 'dead')}
