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
--   report(entry, reason, detail)  notes an entry taken out of the queue (dead-lettered or
--                     dropped), for the caller to log (every script returns REPORT as the
--                     last element of its reply)
--   wake()            wakes one idle worker (the `wake` list holds at most one element)
--   push_ready(id, prio, front)   queues a ready task (front: to run next); false when the
--                     queue key holds something else than a list
--   push_suspect(id)  queues a task whose worker vanished while running it (see reap)
--   chunked(cmd, key, items)      runs cmd over items, at most 1000 arguments per call
--   lease_scores(members)         the `lease` scores of `<uuid>:<token>` members
--                                 (false where the claim is no longer current)
--   members_of(key, members)      1 or 0 for each member: whether it is in the set `key`
--   notify_done(ids)  publishes finished uuids on `done`, comma separated
--   index(id, from, to, at)       notes that id moved from the per-status index `ix:<from>`
--                                 (nil: none; '*': any unfinished) to `ix:<to>`, scored `at`
--                                 (ms): every status change calls it; flush_index() writes the
--                                 net moves of the call in a few commands, before it returns;
--                                 both do nothing while the indexes are off (IX_ON false)
--   load(id, ...)     the fields (first `s`) of the record of a queue, schedule or lease
--                     entry, or nil, reason and detail when the entry is not a task's
--   record_problem(r) what is wrong with a claimable record (`s`, `n`, `p`, `a` read first)
--   dead_letter(id, cap)          keeps a record in the capped dead-letter
--   dead_letter_record(id, reason, detail, cap)  ends a record with status `error` there
--   dead_letter_raw(entry, reason, detail, cap)  keeps an entry that is not a task record
--                                 (`!<reason>:<entry>`), leaving whatever key it names alone
--   requeue_or_dead(id, prio, front, finished, cap)  queues a task again, or dead-letters it
--                                 (`wrong_type`) when its queue's key holds something else
--   dead_without_status(id, finished, cap)  dead-letters a record that has no status
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
  started = 'set',
}
local function check_keys(...)
  for _, name in ipairs({...}) do
    local kind = redis.call('TYPE', P .. name)['ok']
    if kind ~= 'none' and kind ~= KINDS[name] then
      return 'WRONGTYPE the key ' .. P .. name .. ' holds a ' .. kind .. ' where qtasks keeps a ' ..
        KINDS[name] .. ': something else writes into this app\'s keys (' .. P .. '*). Nothing ' ..
        'was changed. Give that writer other keys (or the app another name), then delete ' ..
        P .. name .. ' if it is not qtasks\' own.'
    end
  end
  return nil
end
local function report(entry, reason, detail)
  REPORT[#REPORT + 1] = entry
  REPORT[#REPORT + 1] = reason
  REPORT[#REPORT + 1] = detail
end
local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, 0)
  redis.call('PEXPIRE', P .. 'wake', 60000)
end
local function push_ready(id, prio, front)
  local q = P .. 'q:' .. fmt(prio)
  local pushed = redis.pcall(front and 'RPUSH' or 'LPUSH', q, id)
  if type(pushed) == 'table' and pushed.err then return false end
  redis.call('ZADD', P .. 'prios', prio, fmt(prio))
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
-- Whether each of `members` is in the set `key` (1 or 0), in one call per 1000.
local function members_of(key, members)
  local out = {}
  local n = #members
  local i = 1
  while i <= n do
    local j = math.min(i + 999, n)
    local part = redis.call('SMISMEMBER', key, unpack(members, i, j))
    for k = 1, #part do out[i + k - 1] = part[k] end
    i = j + 1
  end
  return out
end
-- The scores in `lease` of `members` (false where the claim is no longer current).
local function lease_scores(members)
  local out = {}
  local n = #members
  local i = 1
  while i <= n do
    local j = math.min(i + 999, n)
    local part = redis.call('ZMSCORE', P .. 'lease', unpack(members, i, j))
    for k = 1, #part do out[i + k - 1] = part[k] end
    i = j + 1
  end
  return out
end
-- The indexes are written only while they are on for the app (`ixon`, RedisOptions::status_index).
local IX_ON = redis.call('EXISTS', P .. 'ixon') == 1
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
      for _, s in ipairs({'new', 'process', 'retry'}) do put(rem, rem_keys, s, id) end
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
-- The fields of the record of entry `id` (the first field asked must be `s`), or nil, the
-- dead-letter reason and what is wrong when `id` is not a task's: not a uuid, a key of another
-- type, no record at all.
local function load(id, ...)
  if not is_uuid(id) then return nil, 'malformed_record', 'not a task uuid' end
  local key = T .. id
  local r = redis.pcall('HMGET', key, ...)
  if r.err then return nil, 'wrong_type', foreign(key, 'a task record (hash)') end
  if not r[1] and redis.call('EXISTS', key) == 0 then
    return nil, 'malformed_record', 'no task record ' .. key
  end
  return r
end
-- What is wrong with a record read as {s, n, p, a, ...}: nil when it can be claimed.
local function record_problem(r)
  if r[1] and r[2] and r[2] ~= '' and r[4] and int32(r[3]) then return nil end
  local missing = {}
  if not r[1] then missing[#missing + 1] = 'status (s)' end
  if not r[2] or r[2] == '' then missing[#missing + 1] = 'task name (n)' end
  if not r[3] then missing[#missing + 1] = 'priority (p)' end
  if not r[4] then missing[#missing + 1] = 'arguments (a)' end
  if #missing > 0 then return 'the record has no ' .. table.concat(missing, ', ') end
  if not int32(r[3]) then
    return 'the priority (p) ' .. string.format('%q', r[3]) .. ' is not a whole number'
  end
  return nil
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
  report(id, reason, detail .. '; its record is kept in the dead-letter')
  return id
end
local function dead_letter_raw(entry, reason, detail, cap)
  redis.call('LPUSH', P .. 'dead', '!' .. reason .. ':' .. entry)
  trim_dead(cap)
  report(entry, reason, detail .. '; the entry is kept in the dead-letter')
end
-- Puts task `id` back in the queue of priority `prio` (at its front when `front`); when that
-- key holds something else, dead-letters the task instead, adding it to `finished`. True when
-- it was queued.
local function requeue_or_dead(id, prio, front, finished, cap)
  if push_ready(id, prio, front) then return true end
  finished[#finished + 1] = dead_letter_record(id, 'wrong_type',
    foreign(P .. 'q:' .. fmt(prio), 'a queue (list)'), cap)
  return false
end
-- Dead-letters task `id`, whose record has no status, adding it to `finished`.
local function dead_without_status(id, finished, cap)
  finished[#finished + 1] = dead_letter_record(id, 'malformed_record',
    'the record has no status (s)', cap)
end
-- Returns expired leases: a task that had not started (its lease is not in `started`: it was
-- prefetched by a worker that vanished)
-- goes back where it was claimed from (the front of its queue, or the suspects) without a
-- delivery counted; a task that had started counts a delivery (`rc`) and goes to the
-- suspects, which run alone on an idle worker (so that a task that crashes its worker takes
-- no other task with it), or to the dead-letter (`crashed_worker`) after `max_deliveries`.
-- Returns the uuids that became final.
local function reap(now, max_deliveries, dead_max)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', fmt(now), 'LIMIT', 0, 1000)
  local finished = {}
  if #expired == 0 then return finished end
  local at = fmt(now)
  local pushed = false
  -- The leases whose task started (`started`), then they all go.
  local started = members_of(P .. 'started', expired)
  chunked('ZREM', P .. 'lease', expired)
  chunked('SREM', P .. 'started', expired)
  for k, member in ipairs(expired) do
    local id = string.sub(member, 1, 36)
    local r, why, detail
    local raw = id
    if string.sub(member, 37, 37) ~= ':' or not is_uuid(id) then
      why, detail, raw = 'malformed_record', 'a lease that is not <uuid>:<token>', member
    else
      -- s, rc, p, n, sq (a suspect)
      r, why, detail = load(id, 's', 'rc', 'p', 'n', 'sq')
    end
    if not r then
      dead_letter_raw(raw, why, detail .. ' (an expired lease)', dead_max)
    elseif r[1] == 'process' then
      local key = T .. id
      local prio = int32(r[3])
      if not prio or not r[4] then
        finished[#finished + 1] = dead_letter_record(id, 'malformed_record',
          not prio and 'the priority (p) ' .. string.format('%q', tostring(r[3])) ..
          ' is not a whole number' or 'the record has no task name (n)', dead_max)
      elseif started[k] == 1 then
        local rc = (tonumber(r[2]) or 0) + 1
        if rc > max_deliveries then
          local why_dead = 'task ' .. r[4] .. ' (' .. id .. ') started ' .. rc .. ' times and ' ..
            'each time its worker vanished before finishing it (crashed, killed, or frozen ' ..
            'past its lease): too many deliveries (max_deliveries ' .. max_deliveries .. '). ' ..
            'Check what makes its workers die'
          redis.call('HSET', key, 'rc', fmt(rc))
          finished[#finished + 1] = dead_letter_record(id, 'crashed_worker', why_dead, dead_max)
        else
          redis.call('HSET', key, 's', 'new', 'rc', fmt(rc), 'u', at, 'sq', '1')
          index(id, 'process', 'new', at)
          push_suspect(id)
          pushed = true
        end
      else
        redis.call('HSET', key, 's', 'new', 'u', at)
        index(id, 'process', 'new', at)
        if r[5] then
          push_suspect(id)
        else
          requeue_or_dead(id, prio, true, finished, dead_max)
        end
        pushed = true
      end
    elseif not r[1] then
      dead_without_status(id, finished, dead_max)
    end
    -- Any other status: the task finished meanwhile, and its lease is simply gone.
  end
  if pushed then wake() end
  return finished
end
