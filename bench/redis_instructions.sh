#!/usr/bin/env bash
# Instructions redis-server executes per task, end to end (load-independent, unlike times on a
# shared box): runs a private redis-server under callgrind, the bench's `end_to_end` scenario
# twice (N and 3N tasks), and prints the difference per task, so that start-up and idle work
# cancel out. Also prints the share of the Lua interpreter and of the commands it calls.
#
#   bench/redis_instructions.sh [N] [bench binary]
#
# SCENARIO=enqueue_bulk (any bench scenario) measures that one instead; BENCH_ARGS="--otel"
# passes more flags to the bench.
# Needs valgrind; builds nothing (pass a bench built with `--features redis`, default
# target/release/examples/bench).
set -euo pipefail
n=${1:-10000}
bench=${2:-target/release/examples/bench}
port=7797
out=$(mktemp -d)
run() {
  local tasks=$1
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.$tasks" \
    redis-server --port $port --save "" --appendonly no >/dev/null 2>&1 &
  local pid=$!
  until redis-cli -p $port ping >/dev/null 2>&1; do sleep 0.2; done
  "$bench" --backend redis --redis-url "redis://127.0.0.1:$port/0?command_timeout_ms=60000" --tasks "$tasks" \
    --concurrency 256 --scenarios "${SCENARIO:-end_to_end}" ${BENCH_ARGS:-} | grep -v stored >&2
  redis-cli -p $port info commandstats | grep -E 'evalsha|hset|rpop' >&2
  redis-cli -p $port shutdown nosave >/dev/null 2>&1 || true
  wait $pid || true
  grep -E '^(summary|totals):' "$out/cg.$tasks" | head -1 | awk '{print $2}'
}
small=$(run "$n")
large=$(run $((3 * n)))
per=$(( (large - small) / (2 * n) ))
echo "redis-server instructions per task (end to end): $per"
echo "the most costly functions of the larger run (inclusive), in $out:"
callgrind_annotate --inclusive=yes "$out/cg.$((3 * n))" 2>/dev/null | sed -n '1,40p' | grep -E '^ *[0-9,]+ ' | head -25 || true
