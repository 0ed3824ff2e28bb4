-- prelude.lua: the helpers every qtasks script starts with.
--
-- src/scripts.rs puts this file's code in front of each script's code when it loads them
-- (without the comment header of either file, after the script's `#!lua` flags line), so
-- every script has these locals:
--   P                 the key prefix `{app}:` (ARGV[1]); T = P .. 't:', the task records
--   now_ms()          the server's clock (TIME) in ms: producers and workers on machines
--                     with skewed clocks agree
--   fmt(n)            a number as an integer string
--   is_uuid(s)        whether s is a hyphenated uuid (what every task id is)
--   int32(s)          s as a whole number of the i32 range, or nil
--   check_keys(...)   the error text when one of these keys of the app holds another type
--                     than qtasks keeps there (nil when all are fine); scripts return it
--                     before changing anything
--   report(entry, reason, detail, name)  notes an entry taken out of the queue (dead-lettered
--                     or dropped), with its task name when known, for the caller to log and
--                     count (every script returns REPORT, quadruples, as the last element of
--                     its reply)
--   wake()            wakes one idle worker (the `wake` list holds at most one element)
--   ready_entry(id, at, prio, name, args)   a ready-queue entry: everything a claim needs
--   entry_name(e)     the task name in ready entry e
--   lanes(queue)      the priorities key and list prefix of named queue `queue` (nil: the
--                     default queue)
--   push_ready(entry, prio, front, queue)   queues a ready entry in its queue (front: to run
--                     next); false when the queue key holds something else than a list
--   push_suspect(id)  queues a task whose worker vanished while running it (see reap)
--   chunked(cmd, key, items)      runs cmd over items, at most 1000 arguments per call
--   read_chunked(cmd, key, items) a multi-item read (ZMSCORE, SMISMEMBER, HMGET) over items,
--                                 at most 1000 per call, its replies in one list
--   run_attempt(entry, token)     the attempt of a `run` entry when it is of claim `token`
--   notify_done(ids)  publishes finished uuids on `done`, comma separated
--   index(id, from, to, at)       notes that id moved from the per-status index `ix:<from>`
--                                 (nil: none; '*': new or retry) to `ix:<to>`, scored `at`
--                                 (ms); flush_index() writes the net moves of the call in a
--                                 few commands, before it returns; both do nothing while the
--                                 indexes are off (IX_ON false). A claim indexes nothing: a
--                                 claimed task stays in `ix:new` or `ix:retry` (`process` is
--                                 the `run` hash)
--   load(id)          the record of a queue, schedule or lease entry ({s, p, n, a, at, sq,
--                     rc, u}), or nil, reason and detail when the entry is not a task's
--   record_problem(r) what is wrong with a record that is to run (nil: nothing)
--   queue_task(id, r, at, front, finished, cap)   queues a loaded record again (a suspect:
--                     to the suspects), with `at` attempts so far
--   dead_letter(id, cap)          keeps a record in the capped dead-letter
--   dead_letter_record(id, reason, detail, cap)  ends a record with status `error` there
--   dead_letter_raw(entry, reason, detail, cap)  keeps an entry that is not a task record
--                                 (`!<reason>:<entry>`), leaving whatever key it names alone
--   requeue_or_dead(id, entry, prio, front, finished, cap, queue)  queues a task again, or
--                                 dead-letters it (`wrong_type`) when its queue's key holds
--                                 something else
--   dead_without_status(id, finished, cap)  dead-letters a record that has no status
--   release_slots(ids, members)   frees the concurrency slots the ended claims of ids held
--                                 (members: their `<uuid>:<token>` lease members)
--                                 (`slots`: uuid -> slot key; the slot key is a set of
--                                 `<uuid>:<token>`); true when one was freed
--   release_unique(ids, now)      frees the unique keys of tasks that became final (`uniq`:
--                                 key -> uuid; the holder's record has `uk`: `<hold ms>:<key>`), or holds
--                                 them until now + hold (`uniq_exp`), and frees the keys
--                                 whose hold passed
--   reap(now, max_deliveries, dead_max)   returns expired leases to the queue (a task that
--                                 had started: to the suspects, counted as a delivery, or to
--                                 the dead-letter after max_deliveries); returns the uuids
--                                 that became final
--
-- Every script gets the key prefix as ARGV[1] and `{app}:prios` as KEYS[1] (for cluster
-- routing: every key shares the `{app}` hash tag). The key layout is documented in
-- src/scripts.rs. Each entry a script touches is checked on its own before anything is changed
-- for it, and a bad one never stops, delays or counts against another entry of the same call:
-- commands that could fail on a key of the wrong type run through `redis.pcall`.
-- To run a script by hand, put this file in front of it:
--   cat prelude.lua stats.lua > /tmp/stats.lua
--   redis-cli --eval /tmp/stats.lua '{app}:prios' , '{app}:'
-- Lint with `luacheck .` in this folder (.luacheckrc declares Redis's and the prelude's names).

local P = ARGV[1]
local T = P .. 't:'
local REPORT = {}
-- The per-status indexes are written (and their keys checked) only while they are on for the
-- app (`ixon`, RedisOptions::status_index).
local IX_ON = redis.call('EXISTS', P .. 'ixon') == 1
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local byte = string.byte
-- The shape of a hyphenated uuid (36 bytes, hyphens at 9, 14, 19, 24): enough to tell a task
-- id from garbage before it names a key (a shaped id without a record is caught by the read).
-- Byte checks, not a pattern: this runs for every entry of every script.
local function is_uuid(s)
  return type(s) == 'string' and #s == 36 and byte(s, 9) == 45 and byte(s, 14) == 45 and
    byte(s, 19) == 45 and byte(s, 24) == 45
end
local function int32(s)
  if type(s) ~= 'string' or not string.find(s, '^%-?%d%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then return nil end
  local n = tonumber(s)
  if n < -2147483648 or n > 2147483647 then return nil end
  return n
end
-- What qtasks keeps under each fixed key of the app.
local KINDS = {
  prios = 'zset', sched = 'zset', lease = 'zset', workers = 'zset', dead = 'list',
  suspect = 'list', wake = 'list', kv = 'hash', tok = 'string', drain = 'string',
  started = 'set', run = 'hash', paused = 'hash', ['ix:new'] = 'zset', ['ix:retry'] = 'zset',
  ['ix:success'] = 'zset', ['ix:error'] = 'zset', ['ix:cancel'] = 'zset',
  uniq = 'hash', uniq_exp = 'zset', slots = 'hash',
}
local function check_keys(...)
  for _, name in ipairs({...}) do
    local kind = (IX_ON or string.sub(name, 1, 3) ~= 'ix:') and
      redis.call('TYPE', P .. name)['ok'] or 'none'
    if kind ~= 'none' and kind ~= KINDS[name] then
      return 'WRONGTYPE the key ' .. P .. name .. ' holds a ' .. kind .. ' where qtasks keeps a ' ..
        KINDS[name] .. ': something else writes into this app\'s keys (' .. P .. '*). Nothing ' ..
        'was changed. Give that writer other keys (or the app another name), then delete ' ..
        P .. name .. ' if it is not qtasks\' own.'
    end
  end
  return nil
end
local function report(entry, reason, detail, name)
  REPORT[#REPORT + 1] = entry
  REPORT[#REPORT + 1] = reason
  REPORT[#REPORT + 1] = detail
  REPORT[#REPORT + 1] = name or ''
end
local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, 0)
  redis.call('PEXPIRE', P .. 'wake', 60000)
end
-- A ready-queue entry carries everything a claim needs, so that claiming reads no record:
-- `<uuid>:<attempts so far>:<priority>:<name length>:<name><args>`. (An entry that is a bare
-- uuid, as earlier versions queued, is claimed through its record.)
local NAME_PART = {}
local function ready_entry(id, at, prio, name, args)
  -- `:<name length>:<name>`, once per name and call (a number turned to text costs a sprintf).
  local part = NAME_PART[name]
  if not part then
    part = ':' .. #name .. ':' .. name
    NAME_PART[name] = part
  end
  return id .. ':' .. at .. ':' .. prio .. part .. args
end
-- The task name in ready entry `e` (nil when it has none).
local function entry_name(e)
  local _, last, len = string.find(e, '^%d+:%-?%d+:(%d+):', 38)
  if not last then return nil end
  return string.sub(e, last + 1, last + tonumber(len))
end
-- The keys of a queue's lanes: its priorities (sorted set) and the prefix of its lists, for
-- named queue `queue` (nil or '': the default queue, `prios` and `q:<priority>`; a named one
-- is `prios:<queue>` and `q:<queue>:<priority>`).
local function lanes(queue)
  if not queue or queue == '' then return P .. 'prios', P .. 'q:' end
  return P .. 'prios:' .. queue, P .. 'q:' .. queue .. ':'
end
local function push_ready(entry, prio, front, queue)
  local prios, q = lanes(queue)
  q = q .. fmt(prio)
  local pushed = redis.pcall(front and 'RPUSH' or 'LPUSH', q, entry)
  if type(pushed) == 'table' and pushed.err then return false end
  redis.call('ZADD', prios, prio, fmt(prio))
  return true
end
local function push_suspect(id)
  redis.call('LPUSH', P .. 'suspect', id)
end
local function chunked(cmd, key, items)
  local n = #items
  local i = 1
  while i <= n do
    local j = math.min(i + 999, n)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end
-- The replies of a multi-item read (ZMSCORE, SMISMEMBER, HMGET) of `items` in `key`, in one
-- list, one call per 1000 items.
local function read_chunked(cmd, key, items)
  local out = {}
  local n = #items
  local i = 1
  while i <= n do
    local j = math.min(i + 999, n)
    local part = redis.call(cmd, key, unpack(items, i, j))
    for k = 1, #part do out[i + k - 1] = part[k] end
    i = j + 1
  end
  return out
end
-- A claimed task's `run` entry is `<token>:<attempt>:<claimed ms>`, written by the claim and
-- removed with its lease: the task is `process` while it is there. The attempt (as text) when
-- `entry` is of claim `token`, else nil. Plain finds, no pattern: this runs for every task of
-- every acknowledgement.
local function run_attempt(entry, token)
  if not entry then return nil end
  local n = #token
  if byte(entry, n + 1) ~= 58 or string.sub(entry, 1, n) ~= token then return nil end
  local stop = string.find(entry, ':', n + 2, true)
  if not stop then return nil end
  return string.sub(entry, n + 2, stop - 1)
end
local IX, IX_IDS = {}, {}
local function index(id, from, to, at)
  if not IX_ON then return end
  local m = IX[id]
  if m then
    m[2], m[3] = to, at
  else
    IX[id] = {from, to, at}
    IX_IDS[#IX_IDS + 1] = id
  end
end
local function flush_index()
  if #IX_IDS == 0 then return end
  local rem, add, rem_keys, add_keys = {}, {}, {}, {}
  local function put(groups, keys, key, ...)
    local g = groups[key]
    if not g then g = {}; groups[key] = g; keys[#keys + 1] = key end
    for _, v in ipairs({...}) do g[#g + 1] = v end
  end
  for _, id in ipairs(IX_IDS) do
    local m = IX[id]
    if m[1] == '*' then
      for _, s in ipairs({'new', 'retry'}) do put(rem, rem_keys, s, id) end
    elseif m[1] then
      put(rem, rem_keys, m[1], id)
    end
    put(add, add_keys, m[2], m[3], id)
  end
  for _, s in ipairs(rem_keys) do chunked('ZREM', P .. 'ix:' .. s, rem[s]) end
  for _, s in ipairs(add_keys) do chunked('ZADD', P .. 'ix:' .. s, add[s]) end
  IX, IX_IDS = {}, {}
end
local function notify_done(ids)
  if #ids > 0 then redis.call('PUBLISH', P .. 'done', table.concat(ids, ',')) end
end
local function key_kind(key) return redis.call('TYPE', key)['ok'] end
-- What is wrong with `key`, which holds another type than `what` (a task record, a queue).
local function foreign(key, what)
  return 'the key ' .. key .. ' holds a ' .. key_kind(key) .. ', not ' .. what .. ': ' ..
    'something else writes into this app\'s keys; the key is left as it is'
end
-- The record of entry `id` as {s, p, n, a, at, sq, rc, u, qn} (status, priority, name, args,
-- attempts, suspect, deliveries, updated, named queue), or nil, the dead-letter reason and what is wrong
-- when `id` is not a task's: not a uuid, a key of another type, no record at all.
local function load(id)
  if not is_uuid(id) then return nil, 'malformed_record', 'not a task uuid' end
  local key = T .. id
  local r = redis.pcall('HMGET', key, 's', 'p', 'n', 'a', 'at', 'sq', 'rc', 'u', 'qn')
  if r.err then return nil, 'wrong_type', foreign(key, 'a task record (hash)') end
  if not r[1] and redis.call('EXISTS', key) == 0 then
    return nil, 'malformed_record', 'no task record ' .. key
  end
  return {s = r[1], p = r[2], n = r[3], a = r[4], at = r[5], sq = r[6], rc = r[7], u = r[8],
    qn = r[9]}
end
-- What is wrong with a loaded record that is to run: nil when nothing is.
local function record_problem(r)
  if r.s and r.n and r.n ~= '' and r.a and int32(r.p) then return nil end
  local missing = {}
  if not r.s then missing[#missing + 1] = 'status (s)' end
  if not r.n or r.n == '' then missing[#missing + 1] = 'task name (n)' end
  if not r.p then missing[#missing + 1] = 'priority (p)' end
  if not r.a then missing[#missing + 1] = 'arguments (a)' end
  if #missing > 0 then return 'the record has no ' .. table.concat(missing, ', ') end
  return 'the priority (p) ' .. string.format('%q', r.p) .. ' is not a whole number'
end
local function trim_dead(cap)
  local over = redis.call('LRANGE', P .. 'dead', cap, -1)
  if #over > 0 then
    for _, old in ipairs(over) do
      -- Raw entries (`!reason:entry`) name no record of ours.
      if is_uuid(old) and key_kind(T .. old) == 'hash' then redis.call('DEL', T .. old) end
    end
    redis.call('LTRIM', P .. 'dead', 0, cap - 1)
  end
end
local function dead_letter(id, cap)
  redis.call('PERSIST', T .. id)
  redis.call('LPUSH', P .. 'dead', id)
  trim_dead(cap)
end
local function dead_letter_record(id, reason, detail, cap)
  index(id, '*', 'error', now_ms())
  redis.call('HSET', T .. id, 's', 'error', 'dr', reason, 'u', fmt(now_ms()),
    'tb', reason .. ': ' .. detail .. '; the task is kept in the dead-letter and not run')
  dead_letter(id, cap)
  -- The name, for the caller's dead-letter count (a record without one reports '').
  local name = redis.call('HGET', T .. id, 'n') or ''
  report(id, reason, detail .. '; its record is kept in the dead-letter', name)
  return id
end
local function dead_letter_raw(entry, reason, detail, cap)
  redis.call('LPUSH', P .. 'dead', '!' .. reason .. ':' .. entry)
  trim_dead(cap)
  report(entry, reason, detail .. '; the entry is kept in the dead-letter')
end
-- Puts task `id` (as `entry`) back in the queue of priority `prio` (at its front when
-- `front`); when that key holds something else, dead-letters the task instead, adding it to
-- `finished`. True when it was queued.
local function requeue_or_dead(id, entry, prio, front, finished, cap, queue)
  if push_ready(entry, prio, front, queue) then return true end
  local _, q = lanes(queue)
  finished[#finished + 1] = dead_letter_record(id, 'wrong_type',
    foreign(q .. fmt(prio), 'a queue (list)'), cap)
  return false
end
-- Dead-letters task `id`, whose record has no status, adding it to `finished`.
local function dead_without_status(id, finished, cap)
  finished[#finished + 1] = dead_letter_record(id, 'malformed_record',
    'the record has no status (s)', cap)
end
-- Queues task `id` again from its loaded record `r`, with `at` attempts so far: a suspect to
-- the suspects, any other to its queue (its front when `front`). A record that cannot run is
-- dead-lettered (`malformed_record`), added to `finished`. True when it was queued.
local function queue_task(id, r, at, front, finished, cap)
  local problem = record_problem(r)
  if problem then
    finished[#finished + 1] = dead_letter_record(id, 'malformed_record', problem, cap)
    return false
  end
  if r.sq then
    push_suspect(id)
    return true
  end
  local prio = int32(r.p)
  return requeue_or_dead(id, ready_entry(id, at, prio, r.n, r.a), prio, front, finished, cap,
    r.qn)
end
-- Returns expired leases: a task that had not started (its lease is not in `started`: it was
-- prefetched by a worker that vanished) goes back where it was claimed from (the front of its
-- queue, or the suspects) without a delivery counted; a task that had started counts a
-- delivery (`rc`) and goes to the suspects, which run alone on an idle worker (so that a task
-- that crashes its worker takes no other task with it), or to the dead-letter
-- (`crashed_worker`) after `max_deliveries`. A lease is of a running claim when its `run`
-- entry has its token (or, for a claim of an earlier version, which kept no `run` entry, when
-- the record's status is `process`); any other expired lease is simply gone. Returns the uuids
-- that became final.
local function reap(now, max_deliveries, dead_max)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', fmt(now), 'LIMIT', 0, 1000)
  local finished = {}
  if #expired == 0 then return finished end
  local at_now = fmt(now)
  local pushed = false
  local ids = {}
  for k, member in ipairs(expired) do ids[k] = string.sub(member, 1, 36) end
  -- The leases whose task started (`started`), and the run entries, then they all go.
  local started = read_chunked('SMISMEMBER', P .. 'started', expired)
  local runs = read_chunked('HMGET', P .. 'run', ids)
  chunked('ZREM', P .. 'lease', expired)
  chunked('SREM', P .. 'started', expired)
  -- Their concurrency slots are no longer held (see claim.lua).
  redis.pcall('HDEL', P .. 'slots', unpack(ids))
  for k, member in ipairs(expired) do
    local id = ids[k]
    local claim_at = tonumber(run_attempt(runs[k], string.sub(member, 38)))
    local r, why, detail
    if string.sub(member, 37, 37) ~= ':' or not is_uuid(id) then
      dead_letter_raw(member, 'malformed_record', 'a lease that is not <uuid>:<token> ' ..
        '(an expired lease)', dead_max)
    elseif claim_at or not runs[k] then
      if claim_at then redis.call('HDEL', P .. 'run', id) end
      r, why, detail = load(id)
      if not r then
        dead_letter_raw(id, why, detail .. ' (an expired lease)', dead_max)
        claim_at = nil
      elseif not claim_at and r.s == 'process' then
        -- A claim of an earlier version, which wrote its attempt on the record.
        claim_at = tonumber(r.at) or 1
      elseif not claim_at and not r.s then
        dead_without_status(id, finished, dead_max)
      end
    end
    -- Without a claim: the run entry is of another claim, or the task finished meanwhile;
    -- the lease is simply gone.
    if claim_at then
      if started[k] == 1 then
        local rc = (tonumber(r.rc) or 0) + 1
        if rc > max_deliveries then
          local why_dead = 'task ' .. tostring(r.n) .. ' (' .. id .. ') started ' .. rc ..
            ' times and each time its worker vanished before finishing it (crashed, killed, ' ..
            'or frozen past its lease): too many deliveries (max_deliveries ' ..
            max_deliveries .. '). Check what makes its workers die'
          redis.call('HSET', T .. id, 'rc', fmt(rc), 'at', fmt(claim_at))
          finished[#finished + 1] = dead_letter_record(id, 'crashed_worker', why_dead, dead_max)
        else
          local problem = record_problem(r)
          if problem then
            finished[#finished + 1] = dead_letter_record(id, 'malformed_record', problem, dead_max)
          else
            redis.call('HSET', T .. id, 's', 'new', 'rc', fmt(rc), 'at', fmt(claim_at),
              'u', at_now, 'sq', '1')
            index(id, r.s, 'new', at_now)
            push_suspect(id)
            pushed = true
          end
        end
      else
        -- Prefetched, never started: this claim does not count.
        redis.call('HSET', T .. id, 's', 'new', 'at', fmt(claim_at - 1), 'u', at_now)
        index(id, r.s, 'new', at_now)
        if queue_task(id, r, claim_at - 1, true, finished, dead_max) then pushed = true end
      end
    end
  end
  if pushed then wake() end
  return finished
end

local function release_slots(ids, members)
  -- Most apps limit nothing: one EXISTS, not a read of every id.
  if #ids == 0 or redis.call('EXISTS', P .. 'slots') == 0 then return false end
  local slots = redis.pcall('HMGET', P .. 'slots', unpack(ids))
  if type(slots) ~= 'table' or slots.err then return false end
  local freed, gone = false, {}
  for k, id in ipairs(ids) do
    local key = slots[k]
    if key then
      redis.call('SREM', key, members[k])
      gone[#gone + 1] = id
      freed = true
    end
  end
  if #gone > 0 then chunked('HDEL', P .. 'slots', gone) end
  return freed
end
local function release_unique(ids, now)
  -- An app without unique keys: one EXISTS. Else each final task's record says its key.
  if #ids > 0 and redis.call('EXISTS', P .. 'uniq') == 1 then
    for _, id in ipairs(ids) do
      local v = redis.pcall('HGET', T .. id, 'uk')
      local colon = type(v) == 'string' and string.find(v, ':', 1, true)
      if colon then
        local hold = tonumber(string.sub(v, 1, colon - 1)) or 0
        local key = string.sub(v, colon + 1)
        if hold > 0 then
          redis.call('ZADD', P .. 'uniq_exp', now + hold, key .. '\n' .. id)
        elseif redis.call('HGET', P .. 'uniq', key) == id then
          redis.call('HDEL', P .. 'uniq', key)
        end
      end
    end
  end
  if redis.call('EXISTS', P .. 'uniq_exp') == 0 then return end
  local over = redis.pcall('ZRANGEBYSCORE', P .. 'uniq_exp', '-inf', fmt(now), 'LIMIT', 0, 100)
  if type(over) == 'table' and not over.err and #over > 0 then
    for _, member in ipairs(over) do
      local nl = string.find(member, '\n', 1, true)
      local key, id = string.sub(member, 1, nl - 1), string.sub(member, nl + 1)
      if redis.call('HGET', P .. 'uniq', key) == id then redis.call('HDEL', P .. 'uniq', key) end
    end
    chunked('ZREM', P .. 'uniq_exp', over)
  end
end
