"""The router's shadow tee: a copy of a live request to the shadow version, off the client's path.

After the primary has answered (the client's answer is already on its way), `ShadowTee.copy`
starts a background task that sends the same request, with the same `x-request-id` and the
`SHADOW_HEADER` marker (so the shadow's server keeps it out of its live record), to the shadow.
The copy has its own timeout and a bound on copies in flight: a slow or failing shadow costs
dropped copies, never the primary's latency or answer. Each copy's pair of answers (the
primary's and the shadow's prediction scores and latencies, or the shadow's error) is one JSON
line in the mirror log, which the shadow readout reads.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_core.jsonl_log import JsonLinesWriter
from serving.prediction_observer import SHADOW_HEADER

MIRROR_LOG = "mirrored.jsonl"


def first_score(body: bytes) -> float | None:
    """The prediction score of the first row of a V1 answer (the number monitoring records:
    the positive-class probability, the class index, the value); None if there is none."""
    try:
        doc = json.loads(body)
        first = doc["predictions"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(first, dict):
        return None
    if "probability" in first:
        return float(first["probability"])
    if "value" in first:
        return float(first["value"])
    probs = first.get("probabilities")
    if isinstance(probs, dict) and probs:
        values = list(probs.values())
        return float(values.index(max(values)))
    return None


@dataclass
class ShadowTee:
    version: str
    url: str
    percent: int
    log: JsonLinesWriter
    timeout_s: float = 5.0
    max_in_flight: int = 64
    counts: dict[str, int] = field(
        default_factory=lambda: {"copied": 0, "answered": 0, "failed": 0, "dropped": 0}
    )
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def open(cls, version: str, url: str, percent: int, log_dir: Path) -> ShadowTee:
        return cls(version, url, percent, JsonLinesWriter(log_dir / MIRROR_LOG))

    def state(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "percent": self.percent,
            "counts": dict(self.counts),
            "log": str(self.log.path),
        }

    def copy(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        primary_version: str,
        primary_body: bytes,
        primary_latency_s: float,
    ) -> None:
        """Start the copy in the background (or drop it when too many are in flight)."""
        if len(self._tasks) >= self.max_in_flight:
            self.counts["dropped"] += 1
            return
        self.counts["copied"] += 1
        task = asyncio.get_running_loop().create_task(
            self._send(client, request, primary_version, primary_body, primary_latency_s)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self,
        client: httpx.AsyncClient,
        request: httpx.Request,
        primary_version: str,
        primary_body: bytes,
        primary_latency_s: float,
    ) -> None:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() != "host"]
        headers.append((SHADOW_HEADER, "1"))
        url = self.url + request.url.raw_path.decode("latin-1")
        started = time.perf_counter()
        score: float | None = None
        error = None
        try:
            r = await client.request(
                request.method, url, headers=headers, content=request.content,
                timeout=self.timeout_s,
            )  # fmt: skip
            if r.status_code == 200:
                score = first_score(r.content)
            error = None if score is not None else f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            error = repr(e)
        latency = time.perf_counter() - started
        self.counts["answered" if error is None else "failed"] += 1
        self.log.write(
            {
                "request_id": request.headers.get("x-request-id", ""),
                "at": time.time(),
                "primary_version": primary_version,
                "shadow_version": self.version,
                "primary": first_score(primary_body),
                "primary_latency_s": primary_latency_s,
                "shadow": score,
                "shadow_latency_s": latency if error is None else None,
                "error": error,
            }
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.log.close()
