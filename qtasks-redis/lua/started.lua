-- started.lua: records that claimed tasks start: for each lease still current, the record's
-- `st` becomes the lease's token, so that losing this lease from now on counts as a delivery
-- (see reap). Reaps expired leases first: a lease past its deadline is no longer current, and
-- its task must not start.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, max deliveries, dead-letter cap, then uuid and token pairs
-- Reply:   {positions (1-based) of the given leases that are not current, report}, where
--          report lists the dropped entries (entry, reason, detail, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local dead_max = tonumber(ARGV[3])
local bad_key = check_keys('prios', 'lease', 'suspect', 'dead', 'wake')
if bad_key then return redis.error_reply(bad_key) end
local finished = reap(now, tonumber(ARGV[2]), dead_max)
local members = {}
for i = 4, #ARGV, 2 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local lost, gone = {}, {}
local k = 0
for i = 4, #ARGV, 2 do
  k = k + 1
  if not current[k] then
    lost[#lost + 1] = k
  else
    local id = ARGV[i]
    local key = T .. id
    local s = redis.pcall('HGET', key, 's')
    if s == 'process' then
      redis.call('HSET', key, 'st', ARGV[i + 1])
    else
      -- A current lease whose record is gone, of another type, or not running: not a task to
      -- start. The lease goes; a record that is ours goes to the dead-letter.
      lost[#lost + 1] = k
      gone[#gone + 1] = members[k]
      if type(s) == 'table' then
        dead_letter_raw(id, 'wrong_type', foreign(key, 'a task record (hash)'), dead_max)
      elseif not s and redis.call('EXISTS', key) == 0 then
        dead_letter_raw(id, 'malformed_record', 'no task record ' .. key .. ' (a lease)', dead_max)
      elseif not s then
        finished[#finished + 1] = dead_letter_record(id, 'malformed_record',
          'the record has no status (s)', dead_max)
      else
        report(id, 'malformed_record', 'a current lease of a task whose status is ' .. s ..
          '; the lease is dropped')
      end
    end
  end
end
if #gone > 0 then chunked('ZREM', P .. 'lease', gone) end
notify_done(finished)
return {lost, REPORT}
