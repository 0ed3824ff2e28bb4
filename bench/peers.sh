#!/usr/bin/env bash
# Runs the qtasks `end_to_end` workload (N no-op tasks, a bulk producer beside a running
# worker, in one process, until the last task is done; each task checked to have run exactly
# once) through qtasks and through the peer Rust task queues on one private Redis, interleaved,
# and prints the medians and the ratios. Not part of CI.
#
#   bench/peers.sh [TASKS]        (default 20000)
#
# Peers (bench/peers/, its own cargo workspace): apalis 1.0 + apalis-redis 1.0 (tuned),
# rusty-sidekiq 0.15, rusty-celery (crate celery) 0.5 on its Redis broker. What each program
# does is written at the top of its main.rs and in docs/benchmarks.md.
#
# Environment: PEERS_CONCURRENCY (default 256: qtasks' lanes, and each peer's concurrency),
# PEERS_ROUNDS (default 3), PEERS_RUN_TIMEOUT (seconds per run, default 360),
# PEERS_BUILD_TIMEOUT (seconds per build, default 1800), PEERS_ONLY (e.g. "apalis,sidekiq").
# Builds run under `nice -n 19`, one at a time. Redis: a private redis-server on a free
# loopback port (--save "" --appendonly no), stopped on exit; FLUSHALL before every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

N=${1:-20000}
C=${PEERS_CONCURRENCY:-256}
ROUNDS=${PEERS_ROUNDS:-3}
RUN_TIMEOUT=${PEERS_RUN_TIMEOUT:-360}
BUILD_TIMEOUT=${PEERS_BUILD_TIMEOUT:-1800}
PEERS=(apalis sidekiq celery)
if [ -n "${PEERS_ONLY:-}" ]; then
  IFS=, read -r -a PEERS <<<"$PEERS_ONLY"
fi
case "$N" in '' | *[!0-9]*) echo "usage: bench/peers.sh [TASKS]" >&2; exit 2 ;; esac

for tool in redis-server redis-cli python3 timeout cargo; do
  command -v "$tool" >/dev/null || { echo "peers.sh: $tool is needed" >&2; exit 1; }
done

work=$(mktemp -d /tmp/qtasks-peers.XXXXXX)
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load average before: $(loadavg)  ($(nproc) cores)"

# --- a private Redis on a free loopback port ----------------------------------------------
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --dir "$work" --pidfile "$work/redis.pid" --logfile "$work/redis.log" >/dev/null
for _ in $(seq 100); do
  redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis_pid=$(cat "$work/redis.pid")
redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null || { echo "redis-server did not start" >&2; exit 1; }
url="redis://127.0.0.1:$port/0"
echo "redis: $(redis-server --version | cut -d' ' -f3) on 127.0.0.1:$port (pid $redis_pid)"

# --- builds, one at a time, niced ---------------------------------------------------------
declare -A unusable=()
echo "building qtasks' bench ..." >&2
if ! timeout "$BUILD_TIMEOUT" nice -n 19 cargo build -q --release --features redis --example bench \
  >"$work/build-qtasks.log" 2>&1; then
  tail -20 "$work/build-qtasks.log" >&2
  echo "qtasks' bench did not build" >&2
  exit 1
fi
qtasks_bin=$root/target/release/examples/bench

export CARGO_TARGET_DIR=$root/bench/peers/target
for peer in "${PEERS[@]}"; do
  echo "building ${peer}_bench ..." >&2
  if ! (cd bench/peers && timeout "$BUILD_TIMEOUT" nice -n 19 cargo build -q --release \
    -p "${peer}_bench") >"$work/build-$peer.log" 2>&1; then
    unusable[$peer]="cannot be built here: $(grep -m1 -E '^error' "$work/build-$peer.log" || tail -1 "$work/build-$peer.log")"
    echo "$peer ${unusable[$peer]}" >&2
  fi
done
unset CARGO_TARGET_DIR

# --- runs ---------------------------------------------------------------------------------
# run NAME OUT: one end_to_end run after a FLUSHALL; appends its JSON line (or an error line)
# to OUT.
run() {
  local name=$1 out=$2 line rc=0
  redis-cli -h 127.0.0.1 -p "$port" flushall >/dev/null
  if [ "$name" = qtasks ]; then
    line=$(timeout -k 10 "$RUN_TIMEOUT" "$qtasks_bin" --backend redis --redis-url "$url" \
      --tasks "$N" --concurrency "$C" --scenarios end_to_end --json 2>>"$work/stderr.log" \
      | tail -1) || rc=$?
  else
    line=$(timeout -k 10 "$RUN_TIMEOUT" "$root/bench/peers/target/release/${name}_bench" \
      --tasks "$N" --concurrency "$C" --redis-url "$url" 2>>"$work/stderr.log" | tail -1) || rc=$?
  fi
  if [ -z "$line" ] || ! python3 -c 'import json, sys; json.loads(sys.argv[1])' "$line" 2>/dev/null; then
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      line="{\"queue\":\"$name\",\"error\":\"timed out after ${RUN_TIMEOUT}s\"}"
    else
      line="{\"queue\":\"$name\",\"error\":\"exit code $rc, no result line\"}"
    fi
  fi
  echo "$line" >>"$out"
  python3 - "$name" "$line" <<'PY'
import json, sys
name, r = sys.argv[1], json.loads(sys.argv[2])
if r.get("tasks_per_s") is not None:
    print(f"  {name:<8} {r['tasks_per_s']:>9.0f} tasks/s  exactly once: {r.get('exactly_once')}")
else:
    print(f"  {name:<8} failed: {r.get('error')}")
PY
}

echo "end_to_end, $N tasks, concurrency $C, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  echo "round $round (load average $(loadavg))"
  for peer in "${PEERS[@]}"; do
    [ -n "${unusable[$peer]:-}" ] && continue
    # Alternate who goes first, so neither side always runs on a warmer (or busier) box.
    if [ $((round % 2)) = 1 ]; then
      run qtasks "$work/qtasks-vs-$peer.jsonl"
      run "$peer" "$work/$peer.jsonl"
    else
      run "$peer" "$work/$peer.jsonl"
      run qtasks "$work/qtasks-vs-$peer.jsonl"
    fi
  done
done
load_after=$(loadavg)

# --- the table ----------------------------------------------------------------------------
for peer in "${PEERS[@]}"; do
  echo "$peer	${unusable[$peer]:-}"
done >"$work/peers.tsv"
python3 - "$work" "$N" "$C" <<'PY'
import json, statistics, sys, os

work, n, c = sys.argv[1], sys.argv[2], sys.argv[3]

def runs(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]

def median(rs):
    ok = [r["tasks_per_s"] for r in rs if r.get("tasks_per_s") is not None and r.get("exactly_once")]
    return (statistics.median(ok), len(ok)) if ok else (None, 0)

def fmt(v):
    return "n/a" if v is None else f"{v:,.0f}/s"

print()
print(f"end_to_end on one Redis, {n} no-op tasks, concurrency {c}: medians (runs counted)")
print(f"{'peer':<9} {'peer':>14} {'qtasks (paired)':>18} {'qtasks/peer':>12}  exactly once")
notes = []
for line in open(os.path.join(work, "peers.tsv")):
    peer, _, unusable = line.rstrip("\n").partition("\t")
    if unusable:
        print(f"{peer:<9} {'not run':>14} {'':>18} {'':>12}  {peer} {unusable}")
        continue
    p_runs = runs(os.path.join(work, f"{peer}.jsonl"))
    q_runs = runs(os.path.join(work, f"qtasks-vs-{peer}.jsonl"))
    (pm, pk), (qm, qk) = median(p_runs), median(q_runs)
    ratio = f"{qm / pm:.1f}x" if pm and qm else "n/a"
    once = all(r.get("exactly_once") is True for r in p_runs + q_runs)
    print(f"{peer:<9} {fmt(pm) + f' ({pk})':>14} {fmt(qm) + f' ({qk})':>18} {ratio:>12}  "
          f"{'yes, every run' if once else 'NO (see below)'}")
    for r in p_runs + q_runs:
        if r.get("error"):
            notes.append(f"  {r.get('queue')}: {r['error']}")
        elif r.get("exactly_once") is not True:
            notes.append(f"  {r.get('queue')}: a run did not pass the exactly-once check")
    if p_runs and p_runs[-1].get("note"):
        notes.append(f"  {peer}: {p_runs[-1]['note']}")
all_q = [r for f in os.listdir(work) if f.startswith("qtasks-vs-") for r in runs(os.path.join(work, f))]
qm, qk = median(all_q)
print(f"{'qtasks':<9} {'':>14} {fmt(qm) + f' ({qk})':>18} {'':>12}  (all qtasks runs)")
if notes:
    print()
    print("\n".join(notes))
PY
echo
echo "load average after: $load_after"
