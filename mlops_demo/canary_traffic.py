"""Generated prediction traffic for the local rollout (demo and end-to-end test).

Worker threads send V1 predict requests with rows from the project's churn generator to the router
and count every response by the side that served it (`x-routed-to`), its `x-model-version` and
status, so a rollout can show that no request failed on the stable path.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from serving.v1_instances import v1_instances


def instances(rows: int, seed: int) -> list[dict[str, object]]:
    return v1_instances(generate_churn(rows, seed=seed).drop(columns=[CHURN_SCHEMA.target]))


@dataclass
class TrafficTally:
    by_side: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # side, version, status
    transport_errors: int = 0

    def failures(self, side: str) -> int:
        return sum(n for (s, _, status), n in self.by_side.items() if s == side and status >= 500)

    def served(self, side: str | None = None) -> int:
        return sum(n for (s, _, _), n in self.by_side.items() if side in (None, s))

    def summary(self) -> dict[str, int]:
        return {f"{s} v{v} {st}": n for (s, v, st), n in sorted(self.by_side.items())} | {
            "transport errors": self.transport_errors
        }


class TrafficGenerator:
    """Sends traffic from `workers` threads until stopped (a context manager)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        workers: int = 4,
        rows_per_request: int = 2,
        seed: int = 0,
        pool: list[dict[str, object]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`pool`: the rows requests are drawn from (default: churn rows); `headers`: sent with
        every request (a gateway's `Host`)."""
        self.endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
        self.workers = workers
        self.rows_per_request = rows_per_request
        self.pool = pool if pool is not None else instances(2000, seed)
        self.headers = headers or {}
        self.tally = TrafficTally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _work(self, worker: int) -> None:
        rng = np.random.default_rng(worker)
        with httpx.Client(timeout=30.0, headers=self.headers) as client:
            while not self._stop.is_set():
                idx = rng.integers(0, len(self.pool), self.rows_per_request)
                body = {"instances": [self.pool[i] for i in idx]}
                try:
                    r = client.post(self.endpoint, json=body)
                except httpx.HTTPError:
                    with self._lock:
                        self.tally.transport_errors += 1
                    continue
                key = (
                    r.headers.get("x-routed-to", "?"),
                    r.headers.get("x-model-version", "?"),
                    r.status_code,
                )
                with self._lock:
                    self.tally.by_side[key] += 1

    def __enter__(self) -> TrafficGenerator:
        for i in range(self.workers):
            t = threading.Thread(target=self._work, args=(i,), daemon=True, name=f"traffic-{i}")
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
