"""The shadow tee's cost to the primary: its p99 with 100% mirroring against its p99 without,
measured side by side in one run.

Two local routers, each with its own model server for the same registered version (the primary);
one of them tees every request to a shadow version. The same client threads send the same
single-row requests to both, alternating request by request, so both see the same machine load
over the same seconds. The ratio is the mirrored router's p99 over the plain one's.

Everything runs on one machine here. Where the shadow runs in its own pod, its model server does
not take CPU from the primary's; here it would, so it runs at the lowest CPU priority (nice 19):
it gets the cores the primaries leave idle, and what the ratio measures is the tee's own work in
the mirrored router (copying the request, reading both answers, the mirror log). `shadow_nice=0`
measures the shadow's server competing on equal terms instead (an upper bound on the cost).
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from mlops_control.traffic.router_process import RouterProcess
from mlops_core.registry import ModelRegistry
from mlops_demo.canary_traffic import instances
from mlops_demo.train_and_register import train_and_register

MODEL = "churn"


def _client_loop(
    urls: list[str], rows: list[dict[str, object]], n: int, out: dict[str, list[float]]
) -> None:
    with httpx.Client(timeout=30) as client:
        for i in range(n):
            for url in urls if i % 2 == 0 else urls[::-1]:  # neither always goes first
                started = time.perf_counter()
                r = client.post(
                    f"{url}/v1/models/{MODEL}:predict", json={"instances": [rows[i % len(rows)]]}
                )
                elapsed = time.perf_counter() - started
                if r.status_code == 200:
                    out[url].append(elapsed)


def _renice_server_on(router_pid: int, url: str, nice: int) -> int:
    """Set the CPU priority of the router's model server listening on `url`'s port; its pid."""
    port = url.rsplit(":", 1)[1]
    for child in psutil.Process(router_pid).children(recursive=True):
        args = child.cmdline()
        if "--port" in args and args[args.index("--port") + 1] == port:
            child.nice(nice)
            return int(child.pid)
    raise RuntimeError(f"no model server of the router listens on port {port}")


def measure_shadow(
    requests: int = 2000, workers: int = 2, warmup: int = 100, shadow_nice: int = 19
) -> dict[str, Any]:
    """p50/p99 of the primary with and without 100% mirroring, side by side."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        registry = ModelRegistry(str(root / "registry"))
        primary = train_and_register(registry, MODEL, rows=3000, seed=1, estimator="xgboost")
        shadow = train_and_register(registry, MODEL, rows=3000, seed=2)
        plain = RouterProcess.start(MODEL, str(primary), registry.uri, root / "plain")
        mirrored = RouterProcess.start(MODEL, str(primary), registry.uri, root / "mirrored")
        try:
            r = httpx.put(
                f"{mirrored.url}/router/shadow",
                json={"version": str(shadow), "percent": 100},
                timeout=300,
            )
            r.raise_for_status()
            _renice_server_on(mirrored.process.pid, r.json()["shadow"]["url"], shadow_nice)
            rows = instances(500, seed=3)
            urls = [plain.url, mirrored.url]
            _client_loop(urls, rows, warmup, {u: [] for u in urls})
            times: dict[str, list[float]] = {u: [] for u in urls}
            per = [{u: [] for u in urls} for _ in range(workers)]
            threads = [
                threading.Thread(target=_client_loop, args=(urls, rows, requests // workers, p))
                for p in per
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for p in per:
                for u in urls:
                    times[u] += p[u]
            time.sleep(1.0)  # the last copies
            tee = httpx.get(f"{mirrored.url}/router/state").json()["shadow"]["counts"]
        finally:
            plain.stop()
            mirrored.stop()
    a, b = np.array(times[plain.url]), np.array(times[mirrored.url])
    return {
        "requests_each": int(min(len(a), len(b))),
        "workers": workers,
        "mirror_percent": 100,
        "shadow_nice": shadow_nice,
        "plain_p50_ms": round(float(np.quantile(a, 0.5)) * 1000, 2),
        "plain_p99_ms": round(float(np.quantile(a, 0.99)) * 1000, 2),
        "mirrored_p50_ms": round(float(np.quantile(b, 0.5)) * 1000, 2),
        "mirrored_p99_ms": round(float(np.quantile(b, 0.99)) * 1000, 2),
        "p99_ratio": round(float(np.quantile(b, 0.99) / np.quantile(a, 0.99)), 3),
        "tee": tee,
    }
