-- luacheck settings for the qtasks scripts: `luacheck .` in this folder.
-- Redis runs scripts with Lua 5.1 and these globals.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV" }
-- Each script runs after prelude.lua's code: its locals are the scripts' names.
files["*.lua"] = {
  read_globals = {
    "P", "T", "REPORT", "now_ms", "fmt", "is_uuid", "int32", "check_keys", "report", "wake",
    "ready_entry", "push_ready", "push_suspect", "chunked", "read_chunked", "run_attempt",
    "notify_done", "key_kind", "foreign", "load", "record_problem", "trim_dead", "dead_letter",
    "dead_letter_record", "dead_letter_raw", "requeue_or_dead", "dead_without_status",
    "queue_task", "reap", "byte", "entry_name", "index", "flush_index", "IX_ON",
  },
}
-- The prelude defines helpers for the scripts, not for itself.
files["prelude.lua"] = { ignore = { "211" } }
