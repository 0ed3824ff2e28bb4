-- complete.lua: acknowledges finished tasks: stores each outcome, frees its lease, publishes
-- the tasks that became final on `done`, and schedules retries.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, result TTL ms, dead-letter cap, then per completion: uuid, token, kind
--          (`s` success, `e` error, `c` cancel, `r` retry, `d` dead-letter), data (result,
--          traceback or reason), extra (retry delay ms, or dead-letter reason)
-- Reply:   the positions (from 1) of the rejected completions (stale fencing token: the
--          claim is no longer current)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local ttl, dead_max = ARGV[2], tonumber(ARGV[3])
local rejected, done, freed = {}, {}, {}
local retried = false
local members = {}
for i = 4, #ARGV, 5 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local seen = {}
local k = 0
for i = 4, #ARGV, 5 do
  k = k + 1
  local id = ARGV[i]
  local key = T .. id
  -- Stale: the claim is no longer in `lease`, or was acknowledged earlier in this batch.
  if not current[k] or seen[members[k]] then
    rejected[#rejected + 1] = k
  else
    seen[members[k]] = true
    freed[#freed + 1] = members[k]
    local kind, data = ARGV[i + 2], ARGV[i + 3]
    if kind == 's' then
      redis.call('HSET', key, 's', 'success', 'r', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'e' then
      redis.call('HSET', key, 's', 'error', 'tb', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'c' then
      redis.call('HSET', key, 's', 'cancel', 'cr', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'r' then
      redis.call('HSET', key, 's', 'retry', 'tb', data, 'u', NOW)
      redis.call('ZADD', P .. 'sched', fmt(now + tonumber(ARGV[i + 4])), id)
      retried = true
    else
      redis.call('HSET', key, 's', 'error', 'tb', data, 'dr', ARGV[i + 4], 'u', NOW)
      dead_letter(id, dead_max)
      done[#done + 1] = id
    end
  end
end
if #freed > 0 then chunked('ZREM', P .. 'lease', freed) end
notify_done(done)
if retried then wake() end
return rejected
