-- requeue.lua: returns claimed tasks to the front of their queue without counting the
-- attempt (graceful shutdown). Claims that are no longer current are left alone.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then uuid and token pairs
-- Reply:   how many tasks were returned
--
-- Runs after prelude.lua (see its header).

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
