"""The same no-op workload as `examples/bench.rs`, through Python QTasks 1.7.3 on Redis.

    python python_qtasks.py producer N REDIS_URL   # prints JSON lines: enqueue, end_to_end
    python python_qtasks.py worker APP REDIS_URL   # runs a worker (started by the producer)

End to end is measured as in the Rust bench: from the first enqueue until every task's stored
status is `success` (checked by reading the records, since QTasks has no completion signal).
"""
import asyncio
import json
import os
import subprocess
import sys
import time

from qtasks.asyncio import QueueTasks


def make_app(name, url):
    app = QueueTasks(name=name, broker_url=url)

    @app.task(name="noop")
    async def noop(i, data=""):
        return i

    return app


async def enqueue_all(app, n):
    uuids = []
    for i in range(n):
        task = await app.add_task("noop", i)
        uuids.append(task.uuid)
    return uuids


async def wait_all(app, uuids, limit_s):
    deadline = time.monotonic() + limit_s
    pending = list(uuids)
    while pending and time.monotonic() < deadline:
        still = []
        for u in pending:
            t = await app.get(u)
            if t is None or t.status != "success":
                still.append(u)
        pending = still
        if pending:
            await asyncio.sleep(0.05)
    return len(pending)


def producer(n, url):
    # 1. enqueue alone
    app = make_app(f"pyqt-enq-{os.getpid()}", url)
    t0 = time.perf_counter()
    asyncio.run(enqueue_all(app, n))
    dt = time.perf_counter() - t0
    print(json.dumps({"scenario": "enqueue", "backend": "redis", "impl": "python-qtasks-1.7.3",
                      "tasks": n, "tasks_per_s": round(n / dt)}), flush=True)

    # 2. end to end with one worker process
    name = f"pyqt-e2e-{os.getpid()}"
    worker = subprocess.Popen([sys.executable, __file__, "worker", name, url],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)  # QTasks has no readiness signal; give the worker time to start
        app = make_app(name, url)

        async def run():
            t0 = time.perf_counter()
            uuids = await enqueue_all(app, n)
            missing = await wait_all(app, uuids, limit_s=max(120, n / 100))
            return time.perf_counter() - t0, missing

        dt, missing = asyncio.run(run())
        print(json.dumps({"scenario": "end_to_end", "backend": "redis", "impl": "python-qtasks-1.7.3",
                          "tasks": n, "tasks_per_s": round(n / dt), "unfinished": missing}), flush=True)
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def main():
    role = sys.argv[1]
    if role == "producer":
        producer(int(sys.argv[2]), sys.argv[3])
    elif role == "worker":
        make_app(sys.argv[2], sys.argv[3]).run_forever()
    else:
        raise SystemExit(f"unknown role {role!r}: use producer or worker")


if __name__ == "__main__":
    main()
