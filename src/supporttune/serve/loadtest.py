"""A bounded loopback load test of `supporttune serve`: N requests from C concurrent clients.

Used by the test suite (tiny model) and by `python -m supporttune.loadtest RUNDIR` for the figures
in docs/BENCHMARKS.md (embedded model). Only ever targets a server it starts itself on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import threading
import time


class LocalServer:
    """uvicorn in a background thread on a free loopback port (start-up includes the engine's warm-up)."""

    def __init__(self, app, start_timeout: float = 600):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.start_timeout = start_timeout

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + self.start_timeout
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def load(url: str, requests: int = 200, clients: int = 16, timeout: float = 600, max_tokens: int | None = None) -> dict:
    """Send ``requests`` POST /v1/reply from ``clients`` concurrent clients; latency and throughput."""
    import httpx

    latencies: list[float] = []
    failures = 0

    async def client(i: int, http) -> None:
        nonlocal failures
        for j in range(i, requests, clients):
            t0 = time.perf_counter()
            body = {"message": f"order {j} has not arrived, where is it?", **({"max_tokens": max_tokens} if max_tokens else {})}
            r = await http.post(f"{url}/v1/reply", json=body)
            latencies.append(time.perf_counter() - t0)
            failures += r.status_code != 200

    async def main() -> None:
        async with httpx.AsyncClient(timeout=timeout) as http:
            await asyncio.gather(*(client(i, http) for i in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    latencies.sort()
    return {"requests": len(latencies), "clients": clients, "failures": failures,
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p95_ms": round(1000 * latencies[max(0, int(0.95 * len(latencies)) - 1)], 1),
            "requests_per_s": round(len(latencies) / wall, 2), "wall_s": round(wall, 1)}


def main(argv: list[str]) -> None:
    """``python -m supporttune.loadtest RUN [REQUESTS] [MAX_NEW] [window|continuous|off ...]``; one JSON line each."""
    import json

    import httpx

    from ..inference.agent import load_agent
    from .config import ServeOptions
    from .server import create_app

    run, n, max_new = argv[0], int(argv[1]) if len(argv) > 1 else 200, int(argv[2]) if len(argv) > 2 else 32
    agent = load_agent(run)
    for mode in argv[3:] or ["window", "off"]:
        opts = ServeOptions(max_new_tokens=max_new, batching=mode != "off", batcher="continuous" if mode == "continuous" else "window")
        with LocalServer(create_app(agent, opts)) as url:
            health = httpx.get(f"{url}/health").json()
            result = load(url, n, 16, max_tokens=max_new)
            result.update(batcher=mode, max_new_tokens=max_new, warmup_s=health["warmup_s"],
                          batches=httpx.get(f"{url}/health").json()["batches_served"])
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
