"""A Python gRPC client of qtasks, run by tests/grpc_clients.rs: the stubs are generated from
qtasks-grpc/proto/qtasks.proto with grpc_tools.protoc into the directory given by --stubs.

Calls AddTask with a wait, GetTask, WaitTask (streaming) and ListTasks, checks the refusals (no token, unknown task, bad
arguments) and prints one JSON object with what it saw.
"""

import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--stubs", required=True)
    opts = parser.parse_args()
    sys.path.insert(0, opts.stubs)

    import grpc
    import qtasks_pb2
    import qtasks_pb2_grpc

    auth = [("authorization", "Bearer " + opts.token)]
    out = {}
    with grpc.insecure_channel(opts.addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = qtasks_pb2_grpc.QTasksServiceStub(channel)

        added = stub.AddTask(
            qtasks_pb2.AddTaskRequest(
                name="add", args_json="[2]", kwargs_json='{"b": 3}', timeout=10.0
            ),
            metadata=auth,
            timeout=20,
        )
        out["add"] = {
            "ok": added.ok,
            "uuid": added.uuid,
            "result": json.loads(added.result_json) if added.result_json else None,
            "error": added.error,
        }

        got = stub.GetTask(
            qtasks_pb2.GetTaskRequest(uuid=added.uuid, include_result=True), timeout=10
        )
        out["get"] = {
            "ok": got.ok,
            "status": got.status,
            "result": json.loads(got.result_json) if got.result_json else None,
            "traceback": got.traceback,
        }

        events = stub.WaitTask(
            qtasks_pb2.WaitTaskRequest(uuid=added.uuid, timeout=10.0), timeout=20
        )
        out["wait"] = [
            {"status": e.status, "final": e.final, "result": e.result_json} for e in events
        ]

        page = stub.ListTasks(
            qtasks_pb2.ListTasksRequest(status="success", task_name="add", limit=10),
            timeout=10,
        )
        out["list"] = [t.uuid for t in page.tasks]

        def refusal(call):
            try:
                call()
            except grpc.RpcError as e:
                return {"code": e.code().name, "details": e.details()}
            return {"code": "OK", "details": ""}

        out["no_token"] = refusal(
            lambda: stub.AddTask(
                qtasks_pb2.AddTaskRequest(name="add", args_json="[1, 2]"), timeout=10
            )
        )
        out["unknown_task"] = refusal(
            lambda: stub.AddTask(
                qtasks_pb2.AddTaskRequest(name="nope", args_json="[]"),
                metadata=auth,
                timeout=10,
            )
        )
        out["bad_arguments"] = refusal(
            lambda: stub.AddTask(
                qtasks_pb2.AddTaskRequest(name="add", kwargs_json='{"a": "x", "b": 2}'),
                metadata=auth,
                timeout=10,
            )
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
