-- claim.lua: reaps expired leases, moves due scheduled tasks to the ready queue, then claims
-- up to `max` tasks (lowest priority first, FIFO within one) with a lease and a fencing
-- token each. Passes the wake-up on when work is left.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, max, lease ms, max deliveries, dead-letter cap
-- Reply:   {wait_ms, {uuid, name, priority, args, attempt, token, ...}}, where wait_ms is how
--          long until the next scheduled task or lease deadline (-1: none)
--
-- Runs after prelude.lua (see its header).

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
