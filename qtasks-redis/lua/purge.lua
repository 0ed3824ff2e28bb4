-- purge.lua: deletes up to `max` finished records of each status asked that last changed
-- before a time, found in the per-status indexes (never a scan of the key space), with their
-- dead-letter entries. The caller calls again while a call deleted `max` of a status.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, before ms (exclusive), max, then the statuses (`success`, `error`, `cancel`)
-- Reply:   {how many records were deleted, report}
--
-- Runs after prelude.lua (see its header).

local bad_key = check_keys('dead')
if bad_key then return redis.error_reply(bad_key) end
local FINAL = {success = true, error = true, cancel = true}
local before, max = ARGV[2], tonumber(ARGV[3])
local deleted = 0
for i = 4, #ARGV do
  local status = ARGV[i]
  if FINAL[status] then
    local ix = P .. 'ix:' .. status
    local ids = redis.call('ZRANGEBYSCORE', ix, '-inf', '(' .. before, 'LIMIT', 0, max)
    for _, id in ipairs(ids) do
      local r = is_uuid(id) and redis.pcall('HMGET', T .. id, 's', 'dr')
      if type(r) == 'table' and not r.err and r[1] == status then
        redis.call('DEL', T .. id)
        if r[2] then redis.call('LREM', P .. 'dead', 1, id) end
        deleted = deleted + 1
      end
    end
    if #ids > 0 then chunked('ZREM', ix, ids) end
  end
end
return {deleted, REPORT}
