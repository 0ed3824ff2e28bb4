-- renew.lua: extends the leases still held with these tokens, then reaps expired ones.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, lease ms, max deliveries, dead-letter cap, then uuid and token pairs
-- Reply:   {positions (1-based) of the given leases that are no longer current, report},
--          where report lists the dropped entries (entry, reason, detail, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local bad_key = check_keys('prios', 'lease', 'started', 'suspect', 'dead', 'wake', 'run')
if bad_key then return redis.error_reply(bad_key) end
local deadline = fmt(now + tonumber(ARGV[2]))
local ids, members = {}, {}
for i = 5, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1]
end
-- Current: its `run` entry has its token.
local runs = read_chunked('HMGET', P .. 'run', ids)
local renew = {}
local lost = {}
for k = 1, #members do
  if run_attempt(runs[k], ARGV[4 + 2 * k]) then
    renew[#renew + 1] = deadline
    renew[#renew + 1] = members[k]
  else
    lost[#lost + 1] = k
  end
end
if #renew > 0 then chunked('ZADD', P .. 'lease', renew) end
notify_done(reap(now, tonumber(ARGV[3]), tonumber(ARGV[4])))
flush_index()
return {lost, REPORT}
