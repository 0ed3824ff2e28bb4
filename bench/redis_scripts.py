#!/usr/bin/env python3
"""Instructions redis-server executes per task in each qtasks script, phase by phase.

Runs a private redis-server under callgrind, loads the scripts as qtasks does (flags line,
prelude, script; see qtasks-redis/src/scripts.rs), then drives one phase at a time over N tasks
in batches (enqueue, claim, started, complete), dumping callgrind's counters between phases.
The difference between two dumps over N is that phase's cost per task: load-independent, and
needing no Rust build, so a change to a script can be measured in a minute.

    bench/redis_scripts.py [N] [BATCH]      (defaults 10000 and 250)

Needs valgrind (callgrind_control) and redis-server; talks RESP over a socket itself.
"""

import glob
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
# QTASKS_LUA_DIR measures other scripts (e.g. an earlier version's, checked out with
# `git archive <rev> qtasks-redis/lua | tar -x -C /tmp/old`); QTASKS_CLAIM_STRIDE=6 reads the
# claim reply of versions before the ready entries (uuid, name, priority, args, attempt, token).
LUA = os.environ.get("QTASKS_LUA_DIR", os.path.join(HERE, "..", "qtasks-redis", "lua"))
STRIDE = int(os.environ.get("QTASKS_CLAIM_STRIDE", "2"))
# QTASKS_ENQUEUE_FLOW=0 for versions before flow control, whose enqueue took no flow argument
# (since, the second argument says whether the tasks carry flow fields: here they do not).
ENQUEUE_FLOW = os.environ.get("QTASKS_ENQUEUE_FLOW", "1") == "1"
# QTASKS_COMPLETE_RUNS=0 for versions before the attempt history, whose acknowledgement took no
# latency counts and no run per completion.
COMPLETE_RUNS = os.environ.get("QTASKS_COMPLETE_RUNS", "1") == "1"
# QTASKS_ENQUEUE_UNIQUE=1 gives every task a unique key of its own (what a unique enqueue costs).
ENQUEUE_UNIQUE = os.environ.get("QTASKS_ENQUEUE_UNIQUE") == "1"

PORT = 7796
FLAGS = {"enqueue": "#!lua", "get": "#!lua flags=no-writes", "stats": "#!lua flags=no-writes"}


def code(text):
    """A script file without its comment header (as scripts.rs strips it)."""
    while text.startswith("--"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text


def script(name):
    prelude = open(os.path.join(LUA, "prelude.lua")).read()
    body = open(os.path.join(LUA, name + ".lua")).read()
    flags = FLAGS.get(name, "#!lua flags=allow-oom")
    return "%s\n%s\n%s" % (flags, code(prelude), code(body))


class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.read()

    def more(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("redis-server closed the connection")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.more()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)


def total(path):
    for line in open(path):
        m = re.match(r"^(summary|totals): (\d+)", line)
        if m:
            return int(m.group(2))
    return 0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 250
    out = tempfile.mkdtemp()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg" % out,
         "redis-server", "--port", str(PORT), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                r = Resp(PORT)
                r.call("PING")
                break
            except OSError:
                time.sleep(0.2)
        sha = {name: r.call("SCRIPT", "LOAD", script(name)).decode()
               for name in ["enqueue", "claim", "started", "complete"]}
        app = "{bench}:"
        key = "{bench}:prios"
        ids = [str(uuid.uuid4()) for _ in range(n)]
        phases = []

        def dump(label):
            subprocess.run(["callgrind_control", "-d", label, str(server.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            phases.append(label)

        dump("start")
        args = b"\x92\x01\xa0"  # (1, "") as MessagePack
        for i in range(0, n, batch):
            argv = []
            for id in ids[i:i + batch]:
                argv += [id, "noop", "0", args, "1700000000000", "0"]
                if ENQUEUE_UNIQUE:
                    argv += ["1", "noop\x1f" + id, "0", "0", "", "", "", "0"]
            if ENQUEUE_FLOW:
                # Whether the tasks carry flow fields.
                argv.insert(0, "1" if ENQUEUE_UNIQUE else "")
            r.call("EVALSHA", sha["enqueue"], 1, key, app, *argv)
        dump("enqueue")
        leases = []
        while len(leases) < n:
            reply = r.call("EVALSHA", sha["claim"], 1, key, app, batch, 60000, 3, 1000, 0, "me")
            items = reply[1]
            for k in range(0, len(items), STRIDE):
                leases.append((items[k][:36].decode(), items[k + STRIDE - 1].decode()))
            if not items:
                break
        dump("claim")
        for i in range(0, len(leases), batch):
            argv = []
            for id, tok in leases[i:i + batch]:
                argv += [id, tok]
            r.call("EVALSHA", sha["started"], 1, key, app, 3, 1000, *argv)
        dump("started")
        for i in range(0, len(leases), batch):
            argv = []
            for id, tok in leases[i:i + batch]:
                argv += [id, tok, "s", b"\xc0", ""]
                if COMPLETE_RUNS:
                    argv.append("")  # no attempt for the history
            if COMPLETE_RUNS:
                argv.insert(0, "")  # no latency counts
            r.call("EVALSHA", sha["complete"], 1, key, app, 3600000, 1000, *argv)
        dump("complete")
        r.call("SHUTDOWN", "NOSAVE")
    except (ConnectionError, OSError):
        pass
    finally:
        server.wait()
    files = sorted(glob.glob(out + "/cg.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    counts = [total(f) for f in files]
    print("redis-server instructions per task, %d tasks in batches of %d:" % (n, batch))
    for label, count in zip(phases[1:], counts[1:]):
        print("  %-9s %8.0f" % (label, count / n))
    print("  %-9s %8.0f" % ("total", sum(counts[1:len(phases)]) / n))


if __name__ == "__main__":
    main()
