-- cancel.lua: cancels a queued or scheduled task; for a running one, publishes a cancel
-- request (`uuid\nreason` on `cancel`) to the workers.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, uuid, reason, result TTL ms
-- Reply:   `cancelled`, `running` (a cancel request was published to the workers),
--          `finished` or `not_found`
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local id = ARGV[2]
local key = T .. id
local r = redis.call('HMGET', key, 's', 'p')
if not r[1] then return 'not_found' end
if r[1] == 'new' or r[1] == 'retry' then
  redis.call('HSET', key, 's', 'cancel', 'cr', ARGV[3], 'u', NOW)
  redis.call('PEXPIRE', key, ARGV[4])
  redis.call('ZREM', P .. 'sched', id)
  local q = P .. 'q:' .. r[2]
  redis.call('LREM', q, 1, id)
  if redis.call('EXISTS', q) == 0 then redis.call('ZREM', P .. 'prios', r[2]) end
  notify_done({id})
  return 'cancelled'
elseif r[1] == 'process' then
  redis.call('PUBLISH', P .. 'cancel', id .. '\n' .. ARGV[3])
  return 'running'
end
return 'finished'
