-- complete.lua: acknowledges finished tasks: stores each outcome, frees its lease, publishes
-- the tasks that became final on `done`, and schedules retries. A record that turned into a
-- key of another type while its task ran is left alone: its lease is freed and its uuid
-- dead-lettered, and the other completions of the batch go on.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, result TTL ms, dead-letter cap, latency counts (`<minute ms> <q|e><bucket>
--          <count>` triples, space separated: added to the `lat:<minute ms>` hashes), then per
--          completion: uuid, token, kind (`s` success, `e` error, `c` cancel, `r` retry, `l`
--          later: queued again without spending the attempt, `d` dead-letter), data (result,
--          traceback or reason), extra (retry or later delay ms, or dead-letter reason), run (the ended attempt for the history, `h<attempt>`, as
--          `backend::encode_attempt` writes it; empty: none). The history and the latency
--          are kept while the dashboard's indexes are on (`ixon`), as the listing is.
-- Reply:   {positions (from 1) of the rejected completions (stale fencing token: the claim is
--          no longer current), report, 1 when the indexes are on (history and latency kept)
--          else 0}, where report lists the dropped entries (entry, reason, detail, name, ...)
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local NOW = fmt(now)
local ttl, dead_max = ARGV[2], tonumber(ARGV[3])
local bad_key = check_keys('lease', 'started', 'sched', 'dead', 'wake', 'run', 'ix:new',
  'ix:retry', 'ix:success', 'ix:error', 'ix:cancel')
if bad_key then return redis.error_reply(bad_key) end
local rejected, done, freed, gone = {}, {}, {}, {}
local retried = false
local ids = {}
for i = 5, #ARGV, 6 do ids[#ids + 1] = ARGV[i] end
-- A claim is current while its `run` entry has its token (see `run_attempt`).
local runs = read_chunked('HMGET', P .. 'run', ids)
local seen = {}
-- The status each outcome kind ends in, for the per-status indexes (see `index`).
local STATUS_OF = {s = 'success', e = 'error', c = 'cancel', r = 'retry', l = 'new', d = 'error'}
-- HSET that fails (instead of aborting the script) on a key of another type; with the
-- history field `hf` (nil: none) and its value `hv` first.
local function write(key, hf, hv, ...)
  local r
  if hf then r = redis.pcall('HSET', key, hf, hv, ...) else r = redis.pcall('HSET', key, ...) end
  return not (type(r) == 'table' and r.err)
end
for k = 1, #ids do
  local i = 5 + (k - 1) * 6
  local id, token = ids[k], ARGV[i + 1]
  local key = T .. id
  local at = run_attempt(runs[k], token)
  -- Stale: the claim is no longer current, or was acknowledged earlier in this batch.
  if not at or seen[id] then
    rejected[#rejected + 1] = k
  else
    seen[id] = true
    freed[#freed + 1] = id .. ':' .. token
    gone[#gone + 1] = id
    local kind, data, attempts = ARGV[i + 2], ARGV[i + 3], at
    -- The attempt for the history, `h<attempt>`, kept with the dashboard's indexes.
    local run = IX_ON and ARGV[i + 5] or ''
    local hf, hv
    if run ~= '' then hf, hv = 'h' .. attempts, run end
    local ok
    if kind == 's' then
      ok = write(key, hf, hv, 's', 'success', 'r', data, 'u', NOW, 'at', attempts)
      if ok then redis.call('PEXPIRE', key, ttl) end
    elseif kind == 'e' then
      ok = write(key, hf, hv, 's', 'error', 'tb', data, 'u', NOW, 'at', attempts)
      if ok then redis.call('PEXPIRE', key, ttl) end
    elseif kind == 'c' then
      ok = write(key, hf, hv, 's', 'cancel', 'cr', data, 'u', NOW, 'at', attempts)
      if ok then redis.call('PEXPIRE', key, ttl) end
    elseif kind == 'r' then
      ok = write(key, hf, hv, 's', 'retry', 'tb', data, 'u', NOW, 'at', attempts)
      if ok then
        -- It ran to its end: no longer a suspect.
        redis.call('HDEL', key, 'sq')
        redis.call('ZADD', P .. 'sched', fmt(now + tonumber(ARGV[i + 4])), id)
        retried = true
      end
    elseif kind == 'l' then
      -- Not an attempt: no history entry, and the attempt count goes back.
      ok = write(key, nil, nil, 's', 'new', 'u', NOW, 'at', fmt((tonumber(attempts) or 1) - 1))
      if ok then
        redis.call('ZADD', P .. 'sched', fmt(now + tonumber(ARGV[i + 4])), id)
        retried = true
      end
    else
      ok = write(key, hf, hv, 's', 'error', 'tb', data, 'dr', ARGV[i + 4], 'u', NOW, 'at', attempts)
      if ok then dead_letter(id, dead_max) end
    end
    -- The history keeps the last 20 attempts.
    local n = tonumber(attempts) or 0
    if ok and run ~= '' and n > 20 then redis.call('HDEL', key, 'h' .. fmt(n - 20)) end
    if not ok then
      dead_letter_raw(id, 'wrong_type', foreign(key, 'a task record (hash)') ..
        ' (its outcome is lost)', dead_max)
    else
      index(id, '*', STATUS_OF[kind] or 'error', NOW)
      if kind ~= 'r' and kind ~= 'l' then done[#done + 1] = id end
    end
  end
end
-- The latency counts of the batch, kept three hours with the dashboard's indexes (a key of
-- another type is left alone).
local lat_seen = {}
for minute, field, n in string.gmatch(IX_ON and ARGV[4] or '', '(%d+) (%w+) (%d+)') do
  local lat = P .. 'lat:' .. minute
  redis.pcall('HINCRBY', lat, field, n)
  if not lat_seen[lat] then
    lat_seen[lat] = true
    redis.pcall('PEXPIRE', lat, 3 * 3600 * 1000)
  end
end
if #freed > 0 then
  chunked('ZREM', P .. 'lease', freed)
  chunked('SREM', P .. 'started', freed)
  chunked('HDEL', P .. 'run', gone)
  -- Their concurrency slots free: a claim waiting for one may go on.
  if release_slots(gone, freed) then retried = true end
end
release_unique(done, now)
if #done > 0 and IX_ON then
  -- The finished ones older than the result TTL leave their indexes (their records expired).
  local expired = '(' .. fmt(now - tonumber(ttl))
  for _, status in ipairs({'success', 'error', 'cancel'}) do
    redis.call('ZREMRANGEBYSCORE', P .. 'ix:' .. status, '-inf', expired)
    redis.call('PEXPIRE', P .. 'ix:' .. status, ttl)
  end
end
notify_done(done)
if retried then wake() end
flush_index()
-- Whether the history and latency were kept: the caller sends them only while they are.
return {rejected, REPORT, IX_ON and 1 or 0}
