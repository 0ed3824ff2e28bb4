-- retry_dead.lua: queues failed tasks (status `error`, dead-lettered or not) again with status
-- `new`: out of the dead-letter and the `error` index, into their queue and the `new` index,
-- without a TTL (a queued record does not expire). Other statuses and unknown uuids are
-- skipped.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then the uuids
-- Reply:   {the uuids queued again, report}
--
-- Runs after prelude.lua (see its header).

local NOW = fmt(now_ms())
local bad_key = check_keys('prios', 'dead', 'wake', 'ix:new', 'ix:error')
if bad_key then return redis.error_reply(bad_key) end
local queued = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local r = is_uuid(id) and redis.pcall('HMGET', T .. id, 's', 'p', 'dr', 'n', 'a', 'at', 'qn')
  local prio = type(r) == 'table' and not r.err and r[1] == 'error' and r[4] and r[5] and
    int32(r[2])
  if prio then
    redis.call('HSET', T .. id, 's', 'new', 'u', NOW)
    redis.call('HDEL', T .. id, 'tb', 'dr', 'sq', 'rc')
    redis.call('PERSIST', T .. id)
    if r[3] then redis.call('LREM', P .. 'dead', 1, id) end
    index(id, 'error', 'new', NOW)
    local entry = ready_entry(id, tonumber(r[6]) or 0, prio, r[4], r[5])
    if push_ready(entry, prio, false, r[7]) then queued[#queued + 1] = id end
  end
end
if #queued > 0 then wake() end
flush_index()
return {queued, REPORT}
