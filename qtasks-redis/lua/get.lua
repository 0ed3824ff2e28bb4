-- get.lua: a task's record and, while the task is claimed, its `run` entry, read together.
--
-- KEYS[1]: {app}:prios
-- ARGV:    prefix, uuid
-- Reply:   {run entry (`<token>:<attempt>:<claimed ms>`) or nil, {field, value, ...}} (an
--          empty list when there is no record), or a WRONGTYPE error naming the key when the
--          task's key holds another type
--
-- Runs after prelude.lua (see its header).

local id = ARGV[2]
local key = T .. id
local fields = redis.pcall('HGETALL', key)
if fields.err then return redis.error_reply('WRONGTYPE ' .. foreign(key, 'a task record (hash)')) end
local run = redis.pcall('HGET', P .. 'run', id)
if type(run) ~= 'string' then run = false end
return {run, fields}
