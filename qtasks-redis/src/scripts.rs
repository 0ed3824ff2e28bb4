//! The Lua scripts: every state change of a task is one atomic script call, for a whole batch.
//!
//! Each script gets the key prefix (`{app}:`) as `ARGV[1]` and builds its keys from it; all of
//! them share the `{app}` hash tag, so they live in one Redis Cluster slot. The first key is
//! also passed as `KEYS[1]` so a cluster client routes the call to that slot. Time is the
//! server's (`TIME`), so producers and workers on machines with skewed clocks agree.
//!
//! Key layout (see `docs/redis.md`):
//! - `t:<uuid>` hash: the task record (`n` name, `p` priority, `a` args, `s` status,
//!   `c` created ms, `u` updated ms, `at` attempts, `rc` lost leases,
//!   `r` result, `tb` traceback, `cr` cancel reason, `dr` dead-letter reason);
//! - `prios` zset: the priorities that have ready tasks; `q:<priority>` list: ready uuids
//!   (pushed left, claimed from the right, returned to the right to run next);
//! - `sched` zset: delayed tasks and retry backoff, scored by due time (ms);
//! - `lease` zset: claimed tasks as `<uuid>:<token>`, scored by lease deadline (ms). A claim
//!   is current exactly while its member is there, which is how acknowledgements, renewals
//!   and requeues check the fencing token (one `ZMSCORE` per batch);
//! - `tok` string: the fencing-token counter; `wake` list (at most one element): wakes one
//!   idle worker; `dead` list: dead-lettered uuids, capped;
//! - `kv` hash, `claim:<key>` strings, `workers` zset: the global config;
//! - channels `done` (finished uuids, comma separated) and `cancel` (`uuid\nreason`).

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// Helpers every script starts with.
const PRELUDE: &str = r#"
local P = ARGV[1]
local T = P .. 't:'
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, 0)
  redis.call('PEXPIRE', P .. 'wake', 60000)
end
local function push_ready(id, prio, front)
  if front then
    redis.call('RPUSH', P .. 'q:' .. prio, id)
  else
    redis.call('LPUSH', P .. 'q:' .. prio, id)
  end
  redis.call('ZADD', P .. 'prios', prio, prio)
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
local function notify_done(ids)
  if #ids > 0 then redis.call('PUBLISH', P .. 'done', table.concat(ids, ',')) end
end
local function dead_letter(id, cap)
  redis.call('PERSIST', T .. id)
  redis.call('LPUSH', P .. 'dead', id)
  local over = redis.call('LRANGE', P .. 'dead', cap, -1)
  if #over > 0 then
    for _, old in ipairs(over) do redis.call('DEL', T .. old) end
    redis.call('LTRIM', P .. 'dead', 0, cap - 1)
  end
end
-- Returns expired leases to the queue (to its front); after `max_deliveries` of them a task
-- goes to the dead-letter. Returns the uuids that became final.
local function reap(now, max_deliveries, dead_max)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', fmt(now), 'LIMIT', 0, 1000)
  local finished = {}
  if #expired == 0 then return finished end
  local at = fmt(now)
  chunked('ZREM', P .. 'lease', expired)
  for _, member in ipairs(expired) do
    local id = string.sub(member, 1, 36)
    local key = T .. id
    local r = redis.call('HMGET', key, 's', 'rc', 'p', 'n')
    if r[1] == 'process' then
      local rc = (tonumber(r[2]) or 0) + 1
      if rc > max_deliveries then
        redis.call('HSET', key, 's', 'error', 'rc', fmt(rc), 'u', at, 'dr', 'too_many_deliveries',
          'tb', 'too many deliveries: the worker running task ' .. tostring(r[4]) .. ' (' .. id ..
          ') stopped renewing its lease ' .. rc .. ' times (crashed, killed or frozen); the task ' ..
          'is kept in the dead-letter and not run again. Check what makes its workers die.')
        dead_letter(id, dead_max)
        finished[#finished + 1] = id
      else
        redis.call('HSET', key, 's', 'new', 'rc', fmt(rc), 'u', at)
        push_ready(id, r[3], true)
      end
    end
  end
  wake()
  return finished
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

/// `ARGV`: prefix, then per task: uuid, name, priority, args, created ms, delay ms.
/// Writes each record with its queue (or schedule) entry; a uuid that exists is left alone,
/// so a producer may retry an enqueue whose reply it lost.
pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local groups, order = {}, {}
for i = 2, #ARGV, 6 do
  local id, prio, delay = ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 5])
  local key = T .. id
  if redis.call('EXISTS', key) == 0 then
    -- `u` (updated) defaults to `c` and `at` (attempts) to 0 until they change.
    redis.call('HSET', key, 'n', ARGV[i + 1], 'p', prio, 'a', ARGV[i + 3], 's', 'new',
      'c', ARGV[i + 4])
    if delay > 0 then
      redis.call('ZADD', P .. 'sched', fmt(now + delay), id)
    else
      local g = groups[prio]
      if not g then g = {}; groups[prio] = g; order[#order + 1] = prio end
      g[#g + 1] = id
    end
  end
end
for _, prio in ipairs(order) do
  chunked('LPUSH', P .. 'q:' .. prio, groups[prio])
  redis.call('ZADD', P .. 'prios', prio, prio)
end
wake()
return 1
"#,
    )
});

/// `ARGV`: prefix, max, lease ms, max deliveries, dead-letter cap.
/// Reaps expired leases, moves due scheduled tasks to the ready queue, then claims up to `max`
/// tasks (lowest priority first, FIFO within one) with a lease and a fencing token each.
/// Returns `{wait_ms, {uuid, name, priority, args, attempt, token, ...}}`, where `wait_ms` is
/// how long until the next scheduled task or lease deadline (-1: none).
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local max, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
local deadline = fmt(now + lease)
notify_done(reap(now, tonumber(ARGV[4]), tonumber(ARGV[5])))
local due = redis.call('ZRANGEBYSCORE', P .. 'sched', '-inf', fmt(now), 'LIMIT', 0, 1000)
if #due > 0 then
  chunked('ZREM', P .. 'sched', due)
  for _, id in ipairs(due) do
    local r = redis.call('HMGET', T .. id, 's', 'p')
    if r[1] == 'new' or r[1] == 'retry' then push_ready(id, r[2], false) end
  end
end
local out, leases = {}, {}
local tok = tonumber(redis.call('GET', P .. 'tok') or '0')
local n = 0
while n < max do
  local prio = redis.call('ZRANGE', P .. 'prios', 0, 0)[1]
  if not prio then break end
  local qkey = P .. 'q:' .. prio
  local ids = redis.call('RPOP', qkey, max - n)
  if ids then
    for _, id in ipairs(ids) do
      local key = T .. id
      local r = redis.call('HMGET', key, 's', 'n', 'a', 'at')
      if r[1] == 'new' or r[1] == 'retry' then
        tok = tok + 1
        local at = (tonumber(r[4]) or 0) + 1
        local t = fmt(tok)
        redis.call('HSET', key, 's', 'process', 'u', NOW, 'at', fmt(at))
        leases[#leases + 1] = deadline
        leases[#leases + 1] = id .. ':' .. t
        out[#out + 1] = id
        out[#out + 1] = r[2]
        out[#out + 1] = prio
        out[#out + 1] = r[3]
        out[#out + 1] = at
        out[#out + 1] = t
        n = n + 1
      end
    end
  end
  if redis.call('EXISTS', qkey) == 0 then redis.call('ZREM', P .. 'prios', prio) end
end
if n > 0 then
  redis.call('SET', P .. 'tok', fmt(tok))
  chunked('ZADD', P .. 'lease', leases)
  -- Work is left: pass the wake-up on to another idle worker.
  if redis.call('EXISTS', P .. 'prios') == 1 then wake() end
end
local wait = -1
local s = redis.call('ZRANGE', P .. 'sched', 0, 0, 'WITHSCORES')
if s[2] then wait = tonumber(s[2]) - now end
local l = redis.call('ZRANGE', P .. 'lease', 0, 0, 'WITHSCORES')
if l[2] then
  local w = tonumber(l[2]) - now
  if wait < 0 or w < wait then wait = w end
end
if wait >= 0 and wait < 1 then wait = 1 end
return {wait, out}
"#,
    )
});

/// `ARGV`: prefix, result TTL ms, dead-letter cap, then per completion: uuid, token, kind
/// (`s` success, `e` error, `c` cancel, `r` retry, `d` dead-letter), data (result, traceback
/// or reason), extra (retry delay ms, or dead-letter reason). Returns the positions (from 1)
/// of the rejected completions (stale fencing token: the claim is no longer current).
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local ttl, dead_max = ARGV[2], tonumber(ARGV[3])
local rejected, done, freed = {}, {}, {}
local retried = false
local members = {}
for i = 4, #ARGV, 5 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local seen = {}
local k = 0
for i = 4, #ARGV, 5 do
  k = k + 1
  local id = ARGV[i]
  local key = T .. id
  -- Stale: the claim is no longer in `lease`, or was acknowledged earlier in this batch.
  if not current[k] or seen[members[k]] then
    rejected[#rejected + 1] = k
  else
    seen[members[k]] = true
    freed[#freed + 1] = members[k]
    local kind, data = ARGV[i + 2], ARGV[i + 3]
    if kind == 's' then
      redis.call('HSET', key, 's', 'success', 'r', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'e' then
      redis.call('HSET', key, 's', 'error', 'tb', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'c' then
      redis.call('HSET', key, 's', 'cancel', 'cr', data, 'u', NOW)
      redis.call('PEXPIRE', key, ttl)
      done[#done + 1] = id
    elseif kind == 'r' then
      redis.call('HSET', key, 's', 'retry', 'tb', data, 'u', NOW)
      redis.call('ZADD', P .. 'sched', fmt(now + tonumber(ARGV[i + 4])), id)
      retried = true
    else
      redis.call('HSET', key, 's', 'error', 'tb', data, 'dr', ARGV[i + 4], 'u', NOW)
      dead_letter(id, dead_max)
      done[#done + 1] = id
    end
  end
end
if #freed > 0 then chunked('ZREM', P .. 'lease', freed) end
notify_done(done)
if retried then wake() end
return rejected
"#,
    )
});

/// `ARGV`: prefix, then uuid and token pairs. Returns claimed tasks to the front of their
/// queue without counting the attempt (graceful shutdown).
pub(crate) static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local freed, members = {}, {}
for i = 2, #ARGV, 2 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local seen = {}
local k = 0
for i = 2, #ARGV, 2 do
  k = k + 1
  local member = members[k]
  if current[k] and not seen[member] then
    seen[member] = true
    local id = ARGV[i]
    local key = T .. id
    local r = redis.call('HMGET', key, 'at', 'p')
    local at = math.max((tonumber(r[1]) or 1) - 1, 0)
    redis.call('HSET', key, 's', 'new', 'at', fmt(at), 'u', NOW)
    push_ready(id, r[2], true)
    freed[#freed + 1] = member
    redis.call('ZREM', P .. 'lease', member)
  end
end
if #freed > 0 then wake() end
return #freed
"#,
    )
});

/// `ARGV`: prefix, lease ms, max deliveries, dead-letter cap, then uuid and token pairs.
/// Extends the leases still held with these tokens, then reaps expired ones. Returns how many
/// leases were renewed.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local deadline = fmt(now + tonumber(ARGV[2]))
local members = {}
for i = 5, #ARGV, 2 do members[#members + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local current = lease_scores(members)
local renew = {}
for k = 1, #members do
  if current[k] then
    renew[#renew + 1] = deadline
    renew[#renew + 1] = members[k]
  end
end
if #renew > 0 then chunked('ZADD', P .. 'lease', renew) end
local renewed = #renew / 2
notify_done(reap(now, tonumber(ARGV[3]), tonumber(ARGV[4])))
return renewed
"#,
    )
});

/// `ARGV`: prefix, uuid, reason, result TTL ms. Returns `cancelled`, `running` (a cancel
/// request was published to the workers), `finished` or `not_found`.
pub(crate) static CANCEL: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local id = ARGV[2]
local key = T .. id
local r = redis.call('HMGET', key, 's', 'p')
if not r[1] then return 'not_found' end
if r[1] == 'new' or r[1] == 'retry' then
  redis.call('HSET', key, 's', 'cancel', 'cr', ARGV[3], 'u', NOW)
  redis.call('PEXPIRE', key, ARGV[4])
  redis.call('ZREM', P .. 'sched', id)
  local q = P .. 'q:' .. r[2]
  redis.call('LREM', q, 1, id)
  if redis.call('EXISTS', q) == 0 then redis.call('ZREM', P .. 'prios', r[2]) end
  notify_done({id})
  return 'cancelled'
elseif r[1] == 'process' then
  redis.call('PUBLISH', P .. 'cancel', id .. '\n' .. ARGV[3])
  return 'running'
end
return 'finished'
"#,
    )
});

/// `ARGV`: prefix. Returns `{{priority, ready, ...}, scheduled, running, dead_letter}`.
pub(crate) static STATS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local ready = {}
for _, prio in ipairs(redis.call('ZRANGE', P .. 'prios', 0, -1)) do
  ready[#ready + 1] = prio
  ready[#ready + 1] = redis.call('LLEN', P .. 'q:' .. prio)
end
return {ready, redis.call('ZCARD', P .. 'sched'), redis.call('ZCARD', P .. 'lease'),
  redis.call('LLEN', P .. 'dead')}
"#,
    )
});

/// `ARGV`: prefix, worker id, TTL ms. Records a heartbeat and forgets expired workers.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local now = now_ms()
local NOW = fmt(now)
local key = P .. 'workers'
redis.call('ZADD', key, fmt(now + tonumber(ARGV[3])), ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIRE', key, fmt(math.max(tonumber(last[2]) - now, 1))) end
return 1
"#,
    )
});

/// `ARGV`: prefix. The workers whose heartbeat has not expired.
pub(crate) static LIVE_WORKERS: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
return redis.call('ZRANGEBYSCORE', P .. 'workers', '(' .. fmt(now_ms()), '+inf')
"#,
    )
});
