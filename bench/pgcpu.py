#!/usr/bin/env python3
# Runs a command and prints the CPU time the postgres processes and the command used meanwhile
# (sampled from /proc/<pid>/stat every 50 ms): `python3 bench/pgcpu.py ./target/release/examples/bench --backend postgres ...`.
import os, sys, time, subprocess
# Runs the command; samples CPU ticks of postgres processes and the command's process tree.
cmd = sys.argv[1:]
def ticks(pid):
    try:
        f = open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
        return int(f[11]) + int(f[12])
    except Exception:
        return None
def comm(pid):
    try: return open(f'/proc/{pid}/comm').read().strip()
    except Exception: return ''
base = {}
for p in os.listdir('/proc'):
    if p.isdigit() and comm(p) == 'postgres':
        base[p] = ticks(p) or 0
proc = subprocess.Popen(cmd)
seen = {}
bench = 0
while proc.poll() is None:
    for p in os.listdir('/proc'):
        if p.isdigit() and comm(p) == 'postgres':
            t = ticks(p)
            if t is not None: seen[p] = max(seen.get(p, 0), t - base.get(p, 0))
    t = ticks(proc.pid)
    if t is not None: bench = max(bench, t)
    time.sleep(0.05)
hz = os.sysconf('SC_CLK_TCK')
print(f"cpu: postgres {sum(seen.values())/hz:.2f} s, bench {bench/hz:.2f} s", file=sys.stderr)
