-- luacheck settings for the qtasks scripts: `luacheck .` in this folder.
-- Redis runs scripts with Lua 5.1 and these globals.
std = "lua51"
read_globals = { "redis", "KEYS", "ARGV" }
-- Each script runs after prelude.lua's code: its locals are the scripts' names.
files["*.lua"] = {
  read_globals = {
    "P", "T", "now_ms", "fmt", "wake", "push_ready", "chunked", "lease_scores",
    "notify_done", "dead_letter", "reap",
  },
}
-- The prelude defines helpers for the scripts, not for itself.
files["prelude.lua"] = { ignore = { "211" } }
