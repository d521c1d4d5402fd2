"""Searches started from an async web handler: nasflow inside a running service.

A tiny HTTP server (asyncio only, no web framework) that starts architecture searches in
the background and answers status requests while they run:

    python examples/async_service.py          # serves on 127.0.0.1:8089
    curl -X POST 127.0.0.1:8089/experiments   # -> {"id": "k3x9a2bq"}
    curl 127.0.0.1:8089/experiments/k3x9a2bq  # -> state, trials so far, best

The same pattern fits FastAPI: keep the experiments in a task group that lives as long
as the app (its lifespan), start one per request with ``tg.start_soon(exp.run)``.
With ``--self-test`` it starts a search through its own API, follows it, and exits.
"""

from __future__ import annotations

import json
import os
import sys

import anyio
import anyio.abc

import nasflow as nf
from nasflow.demo import DigitsNet, digits_data

QUICK = os.environ.get("NASFLOW_EXAMPLE_QUICK") == "1"


class Service:
    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.tg = tg
        self.experiments: dict[str, nf.Experiment] = {}
        self.train, self.val = digits_data()

    def start(self) -> dict:
        evaluator = nf.evaluator.Classification(self.train, self.val, epochs=1 if QUICK else 4,
                                                lr=1e-2, device="cpu")
        exp = nf.Experiment(DigitsNet(), evaluator, nf.strategy.Random(),
                            nf.ExperimentConfig(max_trials=3 if QUICK else 12, concurrency=2))
        self.experiments[exp.id] = exp
        self.tg.start_soon(exp.run)  # runs on the service's loop; requests keep being served
        return {"id": exp.id}

    def status(self, exp_id: str) -> dict:
        exp = self.experiments.get(exp_id)
        if exp is None:
            return {"error": f"no experiment {exp_id}"}
        best = exp.best()
        return {"id": exp.id, "state": exp.state.value, "trials": len(exp.trials()),
                "best": None if best is None else {"metric": best.metric, "sample": best.sample}}

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        async with stream:
            request = (await stream.receive(65536)).decode(errors="replace")
            method, path = [*request.split(" "), "", ""][:2]
            if method == "POST" and path == "/experiments":
                body, status = self.start(), "201 Created"
            elif method == "GET" and path.startswith("/experiments/"):
                body = self.status(path.rsplit("/", 1)[-1])
                status = "404 Not Found" if "error" in body else "200 OK"
            else:
                body, status = {"error": "POST /experiments or GET /experiments/<id>"}, "400"
            data = json.dumps(body).encode()
            await stream.send(b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: "
                              b"application/json\r\nContent-Length: " + str(len(data)).encode()
                              + b"\r\nConnection: close\r\n\r\n" + data)


async def request(port: int, method: str, path: str) -> dict:
    async with await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        try:
            while True:
                data += await s.receive()
        except anyio.EndOfStream:
            pass
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


async def main(self_test: bool) -> None:
    async with anyio.create_task_group() as tg:
        service = Service(tg)
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1",
                                                   local_port=0 if self_test else 8089)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, service.handle)
        print(f"serving on http://127.0.0.1:{port}", flush=True)
        if not self_test:
            return
        exp_id = (await request(port, "POST", "/experiments"))["id"]
        exp = service.experiments[exp_id]
        async for _ in exp.events(nf.events.TrialEnded, nf.events.ExperimentFinished):
            print(await request(port, "GET", f"/experiments/{exp_id}"), flush=True)
        print("final:", await request(port, "GET", f"/experiments/{exp_id}"))
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main, "--self-test" in sys.argv)
