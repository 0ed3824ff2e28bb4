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
--          holds no task), caller id (for the drain turn), start (how many of the claimed
--          tasks, the first ones, start at once: they join `started` here, as started.lua
--          would do, because the caller has that many lanes free), limits (the concurrency
--          and rate limits per task name: lines joined by 0x1E of `name` 0x1F concurrency
--          0x1F per key (1/0) 0x1F rate interval ms 0x1F per key; `` for none), queues (the
--          queues to take from, in the order of this call, joined by 0x1E: `default` is the
--          default queue; `` means it alone)
-- Limits: a concurrency slot is a member `<uuid>:<token>` of the set `slot:<name>[0x1F<key>]`
-- (`slots`: uuid -> its slot key), valid while that claim's `run` entry is there, so a dead
-- worker's slots come back when its lease is reaped; a rate is a GCRA time
-- (`rate:<name>[0x1F<key>]`, ms, one interval of burst). A task over its limit keeps its
-- place, as a paused one does, and the wait returned includes the next permit.
-- Reply:   {wait_ms, {entry, token, ...}, mode, report}, where an entry is the task's ready
--          entry (`<uuid>:<attempts so far>:<priority>:<name length>:<name><args>`, see
--          `ready_entry`; the attempt of this claim is one more), and
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
local start = tonumber(ARGV[8]) or 0
local bad_key = check_keys('prios', 'sched', 'lease', 'started', 'suspect', 'dead', 'wake',
  'drain', 'run', 'paused', 'ix:new', 'ix:retry', 'ix:error')
if bad_key then return redis.error_reply(bad_key) end
local deadline = fmt(now + lease)
local finished = reap(now, tonumber(ARGV[4]), dead_max)
local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', fmt(now), 'LIMIT', 0, 1000)
if #due > 0 then
  chunked('ZREM', P .. 'sched', due)
  for _, id in ipairs(due) do
    local r, why, detail = load(id)
    if not r then
      dead_letter_raw(id, why, detail .. ' (in ' .. P .. 'sched)', dead_max)
    elseif r.s == 'new' or r.s == 'retry' then
      queue_task(id, r, tonumber(r.at) or 0, false, finished, dead_max)
    elseif not r.s then
      dead_without_status(id, finished, dead_max)
    end
  end
end
local out, leases, runs = {}, {}, {}
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
-- Paused task names (the `paused` hash; `*` pauses the whole app): their entries are put
-- back where they were, in order (`held`: entry, where from, priority).
local paused = redis.call('HGETALL', P .. 'paused')
local hold, held = {}, {}
for i = 1, #paused, 2 do hold[paused[i]] = true end
local holding = #paused > 0
-- The queues of this call, in order; a paused queue (`paused` field 0x1E<queue>) is skipped.
local QUEUES, SERVES = {}, {}
for name in string.gmatch((ARGV[10] and ARGV[10] ~= '') and ARGV[10] or 'default', '[^\30]+') do
  if not hold['\30' .. name] then
    local prios, lane = lanes(name ~= 'default' and name or nil)
    QUEUES[#QUEUES + 1] = {name = name, prios = prios, lane = lane}
  end
  SERVES[name] = true
end
-- The named queue of the entries being taken (nil: the default queue).
local taking_queue = nil
-- The concurrency and rate limits per task name.
local RULES, limited = {}, false
if ARGV[9] and ARGV[9] ~= '' then
  for line in string.gmatch(ARGV[9], '[^\30]+') do
    local name, c, cpk, t, rpk = string.match(line, '^(.*)\31(%d*)\31([01])\31([%d%.]*)\31([01])$')
    if name then
      RULES[name] = {c = tonumber(c), cpk = cpk == '1', t = tonumber(t), rpk = rpk == '1'}
      limited = true
    end
  end
end
-- Within this call: slot counts, full slots, rate times; when the next permit comes.
local SLOTN, FULL, RATE = {}, {}, {}
local permit_in = -1
-- Whether a claim may take task `id` of `name` under `rule` now; when it may, its slot and
-- permit are taken (the slot with the token the claim is about to hand out).
local function admit(id, name, rule)
  local ck, rk
  if rule.cpk or rule.rpk then
    local f = redis.pcall('HMGET', T .. id, 'ck', 'rk')
    if type(f) == 'table' and not f.err then ck, rk = f[1], f[2] end
  end
  local slot, count
  if rule.c then
    slot = P .. 'slot:' .. name .. ((rule.cpk and ck) and ('\31' .. ck) or '')
    if FULL[slot] then return false end
    count = SLOTN[slot]
    if not count then
      count = redis.call('SCARD', slot)
      if count >= rule.c then
        -- Slots of claims that ended without saying so (a reaped lease) come back.
        local members = redis.call('SMEMBERS', slot)
        local ids = {}
        for k, m in ipairs(members) do ids[k] = string.sub(m, 1, 36) end
        local runs = read_chunked('HMGET', P .. 'run', ids)
        local stale = {}
        for k, m in ipairs(members) do
          if not run_attempt(runs[k], string.sub(m, 38)) then stale[#stale + 1] = m end
        end
        if #stale > 0 then chunked('SREM', slot, stale) end
        count = #members - #stale
      end
    end
    if count >= rule.c then
      FULL[slot] = true
      return false
    end
  end
  if rule.t then
    local key = P .. 'rate:' .. name .. ((rule.rpk and rk) and ('\31' .. rk) or '')
    local tat = RATE[key] or tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    if tat > now + rule.t then
      local w = tat - rule.t - now
      if permit_in < 0 or w < permit_in then permit_in = w end
      return false
    end
    RATE[key] = tat + rule.t
  end
  if slot then
    SLOTN[slot] = count + 1
    redis.call('SADD', slot, id .. ':' .. fmt(tok + 1))
    redis.call('HSET', P .. 'slots', id, slot)
  end
  return true
end
-- The text of the next attempt for the usual counts of attempts so far (no sprintf per task).
local ATTEMPT = {}
for k = 0, 9 do ATTEMPT[k] = fmt(k + 1) end
-- Leases ready entry `entry` of task `id` (`at` attempts so far) to the caller.
local function lease_entry(id, at, entry)
  tok = tok + 1
  local t = fmt(tok)
  leases[#leases + 1] = deadline
  leases[#leases + 1] = id .. ':' .. t
  runs[#runs + 1] = id
  runs[#runs + 1] = t .. ':' .. (ATTEMPT[at] or fmt(at + 1)) .. ':' .. NOW
  out[#out + 1] = entry
  out[#out + 1] = t
  n = n + 1
end
-- Claims the task of bare uuid `id` (found in `from`: a suspect, or an entry queued by an
-- earlier version) through its record: true when it was claimable.
local function take_by_record(id, from)
  local r, why, detail = load(id)
  if not r then
    dead_letter_raw(id, why, detail .. ' (in ' .. from .. ')', dead_max)
    return false
  end
  -- A stale entry of a task that is accounted for elsewhere (finished, running, cancelled).
  if r.s and r.s ~= 'new' and r.s ~= 'retry' then return false end
  local problem = record_problem(r)
  if problem then
    finished[#finished + 1] = dead_letter_record(id, 'malformed_record', problem, dead_max)
    return false
  end
  if not SERVES[r.qn or 'default'] or (holding and hold[r.n]) or
      (limited and RULES[r.n] and not admit(id, r.n, RULES[r.n])) then
    held[#held + 1] = {id, from, int32(r.p), r.qn}
    return false
  end
  local at = tonumber(r.at) or 0
  lease_entry(id, at, ready_entry(id, at, int32(r.p), r.n, r.a))
  return true
end
-- Claims ready entry `e` (found in `from`) without reading its record: true when it was
-- claimable. The caller decodes the rest of the entry (one it cannot decode is dead-lettered
-- through its lease).
local function take(e, from)
  local id = string.sub(e, 1, 36)
  local stop = byte(e, 37) == 58 and is_uuid(id) and string.find(e, ':', 38, true)
  local at = stop and tonumber(string.sub(e, 38, stop - 1))
  if not at then return take_by_record(e, from) end
  if holding or limited then
    local name = entry_name(e)
    if name and ((holding and hold[name]) or
        (limited and RULES[name] and not admit(id, name, RULES[name]))) then
      held[#held + 1] = {e, from, tonumber(string.match(e, '^%d+:(%-?%d+):', 38)), taking_queue}
      return false
    end
  end
  lease_entry(id, at, e)
  return true
end
local mode = ''
local overdue_in = -1
local suspects = P .. 'suspect'
if hold['*'] then
  -- The whole app is paused: nothing is claimed.
  mode = 'paused'
elseif redis.call('EXISTS', suspects) == 1 then
  if idle then
    for _ = 1, 100 do
      local id = redis.call('RPOP', suspects)
      if not id then break end
      if take_by_record(id, suspects) then
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
  for _, queue in ipairs(QUEUES) do
    taking_queue = queue.name ~= 'default' and queue.name or nil
    while n < max and budget > 0 do
      local prio = redis.call('ZRANGE', queue.prios, 0, 0)[1]
      if not prio then break end
      local qkey = queue.lane .. prio
      local ids = redis.pcall('RPOP', qkey, max - n)
      if type(ids) == 'table' and ids.err then
        -- Something else than a queue under a queue's key: forget the priority, keep the key.
        redis.call('ZREM', queue.prios, prio)
        dead_letter_raw(qkey, 'wrong_type', foreign(qkey, 'a queue (list)'), dead_max)
      else
        if ids then
          budget = budget - #ids
          for _, id in ipairs(ids) do take(id, qkey) end
        end
        if redis.call('EXISTS', qkey) == 0 then redis.call('ZREM', queue.prios, prio) end
      end
    end
  end
  -- Too many bad entries for one call: the caller comes back at once for the rest.
  if budget <= 0 and n == 0 and #held == 0 then wake() end
end
-- Paused entries go back to the front of where they were, in their order.
for i = #held, 1, -1 do
  local entry, from, prio, queue = held[i][1], held[i][2], held[i][3], held[i][4]
  if from == suspects then
    redis.call('RPUSH', suspects, entry)
  elseif prio then
    push_ready(entry, prio, true, queue)
  end
end
if mode == 'paused' then mode = '' end
for key, tat in pairs(RATE) do
  local ttl = math.ceil(tat - now) + 60000
  redis.call('SET', key, string.format('%.3f', tat), 'PX', ttl)
end
if n > 0 then
  redis.call('SET', P .. 'tok', fmt(tok))
  chunked('ZADD', P .. 'lease', leases)
  chunked('HSET', P .. 'run', runs)
  if start > 0 then
    -- `leases` holds deadline, member pairs in claim order.
    local starting = {}
    for k = 1, math.min(start, n) do starting[k] = leases[2 * k] end
    chunked('SADD', P .. 'started', starting)
  end
  -- Work is left: pass the wake-up on to another idle worker.
  local left = redis.call('EXISTS', suspects) == 1
  for _, queue in ipairs(QUEUES) do
    left = left or redis.call('EXISTS', queue.prios) == 1
  end
  if left then wake() end
end
notify_done(finished)
local wait = overdue_in
if permit_in >= 0 and (wait < 0 or permit_in < wait) then wait = math.ceil(permit_in) end
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
