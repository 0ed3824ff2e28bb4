-- live_workers.lua: the workers whose heartbeat has not expired.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix
-- Reply:   the worker ids
--
-- Runs after prelude.lua (see its header).

local bad_key = check_keys('workers')
if bad_key then return redis.error_reply(bad_key) end
return redis.call('ZRANGEBYSCORE', P .. 'workers', '(' .. fmt(now_ms()), '+inf')
