#!/usr/bin/env bash
# Runs the same no-op workload through Python QTasks 1.7.3 and through qtasks (Rust) on the
# same Redis, and prints the ratio. Not part of CI.
#
#   bench/compare.sh [TASKS]        (default 20000)
#
# Redis: QTASKS_REDIS_URL if set, else a private redis-server on 127.0.0.1:6391.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
here=bench
venv=$here/.venv

if [ -z "${QTASKS_REDIS_URL:-}" ]; then
  port=6391
  redis-server --port $port --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --pidfile /tmp/qtasks-compare-redis.pid >/dev/null
  trap 'kill "$(cat /tmp/qtasks-compare-redis.pid)" 2>/dev/null || true' EXIT
  export QTASKS_REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
url=$QTASKS_REDIS_URL

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "qtasks==1.7.3"
fi

echo "python qtasks 1.7.3, $N tasks ..." >&2
"$venv/bin/python" $here/python_qtasks.py producer "$N" "$url" > /tmp/qtasks-compare-py.jsonl
echo "rust qtasks, $N tasks ..." >&2
cargo run -q --release --features redis --example bench -- --backend redis --tasks "$N" \
  --concurrency 256 --scenarios enqueue,end_to_end --json --redis-url "$url" > /tmp/qtasks-compare-rs.jsonl

python3 - <<'PY'
import json
py = {r["scenario"]: r for r in map(json.loads, open("/tmp/qtasks-compare-py.jsonl"))}
rs = {r["scenario"]: r for r in map(json.loads, open("/tmp/qtasks-compare-rs.jsonl"))}
print(f"{'scenario':<12} {'python qtasks':>14} {'rust qtasks':>12} {'ratio':>8}")
for s in ("enqueue", "end_to_end"):
    p, r = py[s]["tasks_per_s"], rs[s]["tasks_per_s"]
    print(f"{s:<12} {p:>12}/s {r:>10}/s {r / max(p, 1):>7.0f}x")
PY
