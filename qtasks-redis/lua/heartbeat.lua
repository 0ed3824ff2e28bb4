-- heartbeat.lua: records a worker's heartbeat and forgets expired workers.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, worker id, TTL ms
-- Reply:   1
--
-- Runs after prelude.lua (see its header).

local now = now_ms()
local bad_key = check_keys('workers')
if bad_key then return redis.error_reply(bad_key) end
local key = P .. 'workers'
redis.call('ZADD', key, fmt(now + tonumber(ARGV[3])), ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now))
local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIRE', key, fmt(math.max(tonumber(last[2]) - now, 1))) end
return 1
