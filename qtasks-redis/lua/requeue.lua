-- requeue.lua: returns claimed tasks to the front of their queue (a suspect: to the
-- suspects) without counting the attempt (graceful shutdown). Claims that are no longer
-- current are left alone; a record that is no longer a claimable task is dead-lettered on its
-- own.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, dead-letter cap, then uuid and token pairs
-- Reply:   {how many tasks were returned, report}, where report lists the dropped entries
--          (entry, reason, detail, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local dead_max = tonumber(ARGV[2])
local bad_key = check_keys('prios', 'lease', 'started', 'suspect', 'dead', 'wake')
if bad_key then return redis.error_reply(bad_key) end
local freed, members, finished = {}, {}, {}
local returned = 0
for i = 3, #ARGV, 2 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local seen = {}
local k = 0
for i = 3, #ARGV, 2 do
  k = k + 1
  local member = members[k]
  if current[k] and not seen[member] then
    seen[member] = true
    freed[#freed + 1] = member
    local id = ARGV[i]
    local r, why, detail = load(id, 's', 'at', 'p', 'sq')
    if not r then
      dead_letter_raw(id, why, detail .. ' (a lease)', dead_max)
    elseif r[1] == 'process' then
      local prio = int32(r[3])
      if not prio then
        finished[#finished + 1] = dead_letter_record(id, 'malformed_record', 'the priority (p) ' ..
          string.format('%q', tostring(r[3])) .. ' is not a whole number', dead_max)
      else
        local at = math.max((tonumber(r[2]) or 1) - 1, 0)
        redis.call('HSET', T .. id, 's', 'new', 'at', fmt(at), 'u', NOW)
        index(id, 'process', 'new', NOW)
        if r[4] then
          push_suspect(id)
          returned = returned + 1
        elseif requeue_or_dead(id, prio, true, finished, dead_max) then
          returned = returned + 1
        end
      end
    elseif not r[1] then
      dead_without_status(id, finished, dead_max)
    end
  end
end
if #freed > 0 then
  chunked('ZREM', P .. 'lease', freed)
  chunked('SREM', P .. 'started', freed)
end
if returned > 0 then wake() end
notify_done(finished)
flush_index()
return {returned, REPORT}
