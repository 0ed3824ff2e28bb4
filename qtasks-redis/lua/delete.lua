-- delete.lua: deletes finished tasks' records (status `success`, `error` or `cancel`), their
-- index entries and dead-letter entries. Queued and running tasks, and unknown uuids, are
-- skipped.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, then the uuids
-- Reply:   {the uuids deleted, report}
--
-- Runs after prelude.lua (see its header).

local bad_key = check_keys('dead')
if bad_key then return redis.error_reply(bad_key) end
local FINAL = {success = true, error = true, cancel = true}
local deleted = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local r = is_uuid(id) and redis.pcall('HMGET', T .. id, 's', 'dr')
  if type(r) == 'table' and not r.err and FINAL[r[1]] then
    redis.call('DEL', T .. id)
    redis.call('ZREM', P .. 'ix:' .. r[1], id)
    if r[2] then redis.call('LREM', P .. 'dead', 1, id) end
    deleted[#deleted + 1] = id
  end
end
return {deleted, REPORT}
