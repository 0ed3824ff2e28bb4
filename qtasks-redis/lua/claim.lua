-- claim.lua: reaps expired leases, moves due scheduled tasks to the ready queue, then claims
-- up to `max` tasks (lowest priority first, FIFO within one) with a lease and a fencing
-- token each. A suspect (a task whose worker vanished while running it) is claimed alone, by
-- a caller that holds no other task (`idle`); when one has waited a whole lease, one busy
-- caller at a time is told to drain (finish what it holds, then claim again as idle). Entries
-- that are not claimable tasks are dead-lettered on their own. Passes the wake-up on when work
-- is left.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, max, lease ms, max deliveries, dead-letter cap, idle (`1` when the caller
--          holds no task), caller id (for the drain turn)
-- Reply:   {wait_ms, {uuid, name, priority, args, attempt, token, ...}, mode, report}, where
--          wait_ms is how long until the next scheduled task, lease deadline or overdue suspect
--          (-1: none), mode is `suspect` (the one task claimed is a suspect: run it alone),
--          `drain` (claim again once idle) or empty, and report lists the dropped entries
--          (entry, reason, detail, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local max, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local dead_max = tonumber(ARGV[5])
local idle, caller = ARGV[6] == '1', ARGV[7]
local bad_key = check_keys('prios', 'sched', 'lease', 'started', 'suspect', 'dead', 'wake',
  'drain')
if bad_key then return redis.error_reply(bad_key) end
local deadline = fmt(now + lease)
local finished = reap(now, tonumber(ARGV[4]), dead_max)
local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', fmt(now), 'LIMIT', 0, 1000)
if #due > 0 then
  chunked('ZREM', P .. 'sched', due)
  for _, id in ipairs(due) do
    local r, why, detail = load(id, 's', 'p', 'sq')
    if not r then
      dead_letter_raw(id, why, detail .. ' (in ' .. P .. 'sched)', dead_max)
    elseif r[1] == 'new' or r[1] == 'retry' then
      local prio = int32(r[2])
      if not prio then
        finished[#finished + 1] = dead_letter_record(id, 'malformed_record', 'the priority (p) ' ..
          string.format('%q', tostring(r[2])) .. ' is not a whole number', dead_max)
      elseif r[3] then
        push_suspect(id)
      else
        requeue_or_dead(id, prio, false, finished, dead_max)
      end
    elseif not r[1] then
      dead_without_status(id, finished, dead_max)
    end
  end
end
local out, leases = {}, {}
local tok_raw = redis.pcall('GET', P .. 'tok')
local tok = tonumber(type(tok_raw) == 'string' and tok_raw or nil)
if not tok then
  tok = 0
  if tok_raw then
    -- Not a counter of ours: go on from the clock (ms * 1000), above any token handed out.
    report(P .. 'tok', 'malformed_record', 'the fencing-token counter was not a number; ' ..
      'counting on from the clock')
    tok = now * 1000
  end
end
local n = 0
-- Paused (the `paused` hash: task names, `*` for the whole app): left where they are.
local paused, held = redis.call('HGETALL', P .. 'paused'), {}
local hold = {}
for i = 1, #paused, 2 do hold[paused[i]] = true end
-- Claims the task of entry `id` (found in `from`): true when it was claimable.
local function take(id, from)
  local r, why, detail = load(id, 's', 'n', 'p', 'a', 'at')
  if not r then
    dead_letter_raw(id, why, detail .. ' (in ' .. from .. ')', dead_max)
    return false
  end
  -- A stale entry of a task that is accounted for elsewhere (finished, running, cancelled).
  if r[1] and r[1] ~= 'new' and r[1] ~= 'retry' then return false end
  if r[2] and hold[r[2]] then held[#held + 1] = {id, from, r[3]}; return false end
  local problem = record_problem(r)
  if problem then
    finished[#finished + 1] = dead_letter_record(id, 'malformed_record', problem, dead_max)
    return false
  end
  tok = tok + 1
  local at = (tonumber(r[5]) or 0) + 1
  local t = fmt(tok)
  redis.call('HSET', T .. id, 's', 'process', 'u', NOW, 'at', fmt(at))
  index(id, r[1], 'process', NOW)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id .. ':' .. t
  out[#out + 1] = id
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
  out[#out + 1] = r[4]
  out[#out + 1] = at
  out[#out + 1] = t
  n = n + 1
  return true
end
local mode = ''
local overdue_in = -1
local suspects = P .. 'suspect'
if hold['*'] then
  mode = 'paused'
elseif redis.call('EXISTS', suspects) == 1 then
  if idle then
    for _ = 1, 100 do
      local id = redis.call('RPOP', suspects)
      if not id then break end
      if take(id, suspects) then
        mode = 'suspect'
        break
      end
    end
    if redis.call('GET', P .. 'drain') == caller then redis.call('DEL', P .. 'drain') end
  else
    local oldest = redis.call('LINDEX', suspects, -1)
    local since = is_uuid(oldest) and redis.pcall('HGET', T .. oldest, 'u')
    since = type(since) == 'string' and tonumber(since) or nil
    if not since or now - since >= lease then
      -- Overdue: one busy caller at a time drains, to claim it once idle.
      local turn = redis.call('GET', P .. 'drain')
      if not turn then
        redis.call('SET', P .. 'drain', caller, 'PX', lease)
        turn = caller
      end
      if turn == caller then mode = 'drain' end
    else
      overdue_in = since + lease - now
    end
  end
end
if mode == '' then
  local budget = max + 1000
  while n < max and budget > 0 do
    local prio = redis.call('ZRANGE', P .. 'prios', 0, 0)[1]
    if not prio then break end
    local qkey = P .. 'q:' .. prio
    local ids = redis.pcall('RPOP', qkey, max - n)
    if type(ids) == 'table' and ids.err then
      -- Something else than a queue under a queue's key: forget the priority, keep the key.
      redis.call('ZREM', P .. 'prios', prio)
      dead_letter_raw(qkey, 'wrong_type', foreign(qkey, 'a queue (list)'), dead_max)
    else
      if ids then
        budget = budget - #ids
        for _, id in ipairs(ids) do take(id, qkey) end
      end
      if redis.call('EXISTS', qkey) == 0 then redis.call('ZREM', P .. 'prios', prio) end
    end
  end
  -- Too many bad entries for one call: the caller comes back at once for the rest.
  if budget <= 0 and n == 0 and #held == 0 then wake() end
end
for i = #held, 1, -1 do
  local h = held[i]
  if h[2] == suspects then redis.call('RPUSH', suspects, h[1]) else push_ready(h[1], h[3], true) end
end
if mode == 'paused' then mode = '' end
if n > 0 then
  redis.call('SET', P .. 'tok', fmt(tok))
  chunked('ZADD', P .. 'lease', leases)
  -- Work is left: pass the wake-up on to another idle worker.
  if redis.call('EXISTS', P .. 'prios') == 1 or redis.call('EXISTS', suspects) == 1 then wake() end
end
notify_done(finished)
local wait = overdue_in
local s = redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')
if s[2] then
  local w = tonumber(s[2]) - now
  if wait < 0 or w < wait then wait = w end
end
local l = redis.call('ZRANGE', P .. 'lease', 0, 0, 'WITHSCORES')
if l[2] then
  local w = tonumber(l[2]) - now
  if wait < 0 or w < wait then wait = w end
end
if wait >= 0 and wait < 1 then wait = 1 end
flush_index()
return {wait, out, mode, REPORT}
