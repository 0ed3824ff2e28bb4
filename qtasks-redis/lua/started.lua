-- started.lua: records that claimed tasks start: each lease still current joins `started`,
-- so that losing it from now on counts as a delivery (see reap). Reaps expired leases first:
-- a lease past its deadline is no longer current, and its task must not start. Touches no
-- record.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, max deliveries, dead-letter cap, then uuid and token pairs
-- Reply:   {positions (1-based) of the given leases that are not current, report}, where
--          report lists the dropped entries (entry, reason, detail, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local bad_key = check_keys('prios', 'lease', 'started', 'suspect', 'dead', 'wake', 'run')
if bad_key then return redis.error_reply(bad_key) end
notify_done(reap(now, tonumber(ARGV[2]), tonumber(ARGV[3])))
local ids, members = {}, {}
for i = 4, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
  members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1]
end
-- Current: its `run` entry has its token (expired leases were reaped just above).
local runs = read_chunked('HMGET', P .. 'run', ids)
local lost, starting = {}, {}
for k = 1, #members do
  if run_attempt(runs[k], ARGV[3 + 2 * k]) then
    starting[#starting + 1] = members[k]
  else
    lost[#lost + 1] = k
  end
end
if #starting > 0 then chunked('SADD', P .. 'started', starting) end
flush_index()
return {lost, REPORT}
