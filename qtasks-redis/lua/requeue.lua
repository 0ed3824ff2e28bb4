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
local bad_key = check_keys('prios', 'lease', 'started', 'suspect', 'dead', 'wake', 'run')
if bad_key then return redis.error_reply(bad_key) end
local freed, gone, ids, finished = {}, {}, {}, {}
local returned = 0
for i = 3, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
local runs = read_chunked('HMGET', P .. 'run', ids)
local seen = {}
for k = 1, #ids do
  local id, token = ids[k], ARGV[2 + 2 * k]
  local at = tonumber(run_attempt(runs[k], token))
  if at and not seen[id] then
    seen[id] = true
    freed[#freed + 1] = id .. ':' .. token
    gone[#gone + 1] = id
        local r, why, detail = load(id)
    if not r then
      dead_letter_raw(id, why, detail .. ' (a lease)', dead_max)
    elseif not r.s then
      dead_without_status(id, finished, dead_max)
    else
      -- This claim does not count.
      redis.call('HSET', T .. id, 's', 'new', 'at', fmt(at - 1), 'u', NOW)
      index(id, r.s, 'new', NOW)
      if queue_task(id, r, at - 1, true, finished, dead_max) then returned = returned + 1 end
    end
  end
end
if #freed > 0 then
  chunked('ZREM', P .. 'lease', freed)
  chunked('SREM', P .. 'started', freed)
  chunked('HDEL', P .. 'run', gone)
  release_slots(gone, freed)
end
if returned > 0 then wake() end
notify_done(finished)
flush_index()
return {returned, REPORT}
