-- prelude.lua: the helpers every qtasks script starts with.
--
-- src/scripts.rs puts this file's code in front of each script's code when it loads them
-- (without the comment header of either file), so every script has these locals:
--   P                 the key prefix `{app}:` (ARGV[1]); T = P .. 't:', the task records
--   now_ms()          the server's clock (TIME) in ms: producers and workers on machines
--                     with skewed clocks agree
--   fmt(n)            a number as an integer string
--   wake()            wakes one idle worker (the `wake` list holds at most one element)
--   push_ready(id, prio, front)   queues a ready task (front: to run next)
--   chunked(cmd, key, items)      runs cmd over items, at most 1000 arguments per call
--   lease_scores(members)         the `lease` scores of `<uuid>:<token>` members
--                                 (false where the claim is no longer current)
--   notify_done(ids)  publishes finished uuids on `done`, comma separated
--   dead_letter(id, cap)          keeps a record in the capped dead-letter
--   reap(now, max_deliveries, dead_max)   returns expired leases to the queue, or to the
--                                 dead-letter after max_deliveries; returns the uuids that
--                                 became final
--
-- Every script gets the key prefix as ARGV[1] and `{app}:prios` as KEYS[1] (for cluster
-- routing: every key shares the `{app}` hash tag). The key layout is documented in
-- src/scripts.rs. To run a script by hand, put this file in front of it:
--   cat prelude.lua stats.lua > /tmp/stats.lua
--   redis-cli --eval /tmp/stats.lua '{app}:prios' , '{app}:'
-- Lint with `luacheck .` in this folder (.luacheckrc declares Redis's and the prelude's names).

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
