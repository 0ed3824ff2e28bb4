-- progress.lua: stores a running task's progress on its record, while the claim is current.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, uuid, token, value
-- Reply:   1 when stored, 0 when the claim is no longer current (the task ended, or its lease
--          was taken back)
--
-- Runs after prelude.lua (see its header).

local id, token = ARGV[2], ARGV[3]
local run = redis.pcall('HGET', P .. 'run', id)
if type(run) ~= 'string' or not run_attempt(run, token) then return 0 end
local stored = redis.pcall('HSET', T .. id, 'pg', ARGV[4])
if type(stored) == 'table' and stored.err then return 0 end
return 1
