-- cancel.lua: cancels a queued or scheduled task; for a running one, publishes a cancel
-- request (`uuid\nreason` on `cancel`) to the workers.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, uuid, reason, result TTL ms
-- Reply:   `cancelled`, `running` (a cancel request was published to the workers),
--          `finished`, `not_found`, or an error when the task's key holds another type
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local id = ARGV[2]
local key = T .. id
local bad_key = check_keys('prios', 'sched', 'suspect', 'run')
if bad_key then return redis.error_reply(bad_key) end
local r = redis.pcall('HMGET', key, 's', 'p', 'sq', 'n', 'a', 'at', 'qn')
if r.err then return redis.error_reply('WRONGTYPE ' .. foreign(key, 'a task record (hash)')) end
if not r[1] then return 'not_found' end
-- Claimed (its `run` entry is there), or claimed by an earlier version (status `process`).
local running = redis.pcall('HEXISTS', P .. 'run', id) == 1 or r[1] == 'process'
if running then
  redis.call('PUBLISH', P .. 'cancel', id .. '\n' .. ARGV[3])
  return 'running'
elseif r[1] == 'new' or r[1] == 'retry' then
  redis.call('HSET', key, 's', 'cancel', 'cr', ARGV[3], 'u', NOW)
  index(id, r[1], 'cancel', NOW)
  redis.call('PEXPIRE', P .. 'ix:cancel', ARGV[4])
  redis.call('PEXPIRE', key, ARGV[4])
  redis.call('ZREM', P .. 'sched', id)
  if r[3] then redis.call('LREM', P .. 'suspect', 1, id) end
  local prio = int32(r[2])
  if prio then
    local prios, lane = lanes(r[7])
    local q = lane .. fmt(prio)
    -- Its ready entry, rebuilt from the record (or a bare uuid, as earlier versions queued).
    local removed = 0
    if r[4] and r[5] then
      removed = redis.pcall('LREM', q, 1, ready_entry(id, tonumber(r[6]) or 0, prio, r[4], r[5]))
    end
    if removed == 0 then redis.pcall('LREM', q, 1, id) end
    if redis.call('EXISTS', q) == 0 then redis.call('ZREM', prios, fmt(prio)) end
  end
  release_unique({id}, now)
  notify_done({id})
  flush_index()
  return 'cancelled'
end
return 'finished'
