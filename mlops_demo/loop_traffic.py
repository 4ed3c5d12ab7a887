"""Traffic for the drift -> retrain -> rollout loop: a world that changes over time, served over
HTTP, with ground-truth labels sent back later through the feedback route.

The demo's drifting world, built from the project's generator: prices rise gradually (every
customer's monthly and total charges scaled by `price`, so the monitor sees `monthly_charges`
move) and customers with many support tickets start to stay (`concept_drift` labels for a share
`concept` of customers, the same customers as the clean process). Customers did not react to the
price rise itself: their label is the one the generator drew at the old price. That world is one a
model trained before the change gets wrong, and a retrain on recent data gets right.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.settings import load_settings
from serving.v1_instances import v1_instances


@dataclass(frozen=True)
class Phase:
    name: str
    price: float  # factor on monthly and total charges
    concept: float  # share of customers whose labels follow the changed behaviour
    requests: int


def world(rows: int, *, price: float, concept: float, seed: int) -> pd.DataFrame:
    """Customers of the world at one moment (features and true labels)."""
    clean = generate_churn(rows, scenario="clean", seed=seed)
    if concept > 0:
        changed = generate_churn(rows, scenario="concept_drift", seed=seed)  # same customers
        pick = np.random.default_rng(seed + 1).random(rows) < concept
        clean.loc[pick, CHURN_SCHEMA.target] = changed.loc[pick, CHURN_SCHEMA.target]
    for col in ("monthly_charges", "total_charges"):
        clean[col] = (clean[col] * price).round(2)
    return clean


def instances(df: pd.DataFrame) -> list[dict[str, Any]]:
    return v1_instances(df[CHURN_SCHEMA.feature_names])


@dataclass
class Sent:
    at: float
    request_id: str
    version: str
    routed_to: str
    status: int
    rows: int


@dataclass
class TrafficLog:
    sent: list[Sent] = field(default_factory=list)
    labels_sent: int = 0
    label_errors: list[str] = field(default_factory=list)
    transport_errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, s: Sent) -> None:
        with self.lock:
            self.sent.append(s)

    def by_version(self) -> Counter[str]:
        with self.lock:
            return Counter(s.version for s in self.sent if s.status == 200)

    def failures(self) -> int:
        with self.lock:
            return sum(1 for s in self.sent if s.status >= 500) + self.transport_errors


class LoopTraffic:
    """Sends a world's rows through the router from worker threads; labels follow later.

    Labels go to the model server that scored the request (the router's state maps versions to
    servers), `label_delay_s` after the prediction: ground truth arrives after the fact.
    """

    def __init__(
        self,
        router_url: str,
        model: str,
        *,
        workers: int = 3,
        rows_per_request: int = 4,
        label_delay_s: float = 0.5,
    ) -> None:
        self.router_url = router_url.rstrip("/")
        self.model = model
        self.workers = workers
        self.rows_per_request = rows_per_request
        self.label_delay_s = label_delay_s
        self.log = TrafficLog()
        self._labels: queue.Queue[tuple[float, str, str, list[int]] | None] = queue.Queue()
        self._servers: dict[str, str] = {}
        # The model servers inherit MLOPS_API_TOKEN; labels are a write, so they carry it.
        token = load_settings().api_token
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=30, headers=auth)
        self._labeller = threading.Thread(target=self._send_labels, daemon=True)
        self._labeller.start()
        self._continuous: threading.Thread | None = None
        self._stop = threading.Event()

    # --- the servers behind the router -----------------------------------------------------------
    def refresh_servers(self) -> dict[str, str]:
        state = self._client.get(f"{self.router_url}/router/state").json()
        servers = {s["version"]: s["url"] for s in (state["stable"], state["canary"]) if s}
        self._servers.update(servers)
        return servers

    def server_for(self, version: str) -> str | None:
        if version not in self._servers:
            self.refresh_servers()
        return self._servers.get(version)

    # --- predictions -----------------------------------------------------------------------------
    def _post(self, client: httpx.Client, rows: list[dict[str, Any]], labels: list[int]) -> None:
        try:
            r = client.post(
                f"{self.router_url}/v1/models/{self.model}:predict", json={"instances": rows}
            )
        except httpx.HTTPError:
            with self.log.lock:
                self.log.transport_errors += 1
            return
        version = r.headers.get("x-model-version", "?")
        rid = r.headers.get("x-request-id", "")
        self.log.add(
            Sent(
                time.time(),
                rid,
                version,
                r.headers.get("x-routed-to", "?"),
                r.status_code,
                len(rows),
            )
        )
        if r.status_code == 200:
            self._labels.put((time.monotonic() + self.label_delay_s, version, rid, labels))

    def send(self, df: pd.DataFrame, requests: int, *, offset: int = 0) -> None:
        """Send `requests` requests of `rows_per_request` rows from `df` (cycling), then return."""
        rows, labels = instances(df), df[CHURN_SCHEMA.target].astype(int).tolist()
        k = self.rows_per_request
        batches = [
            ((offset + i) * k % len(rows)) for i in range(requests)
        ]  # start row of each request
        work: queue.Queue[int] = queue.Queue()
        for b in batches:
            work.put(b)

        def worker() -> None:
            with httpx.Client(timeout=30) as client:
                while True:
                    try:
                        start = work.get_nowait()
                    except queue.Empty:
                        return
                    idx = [(start + j) % len(rows) for j in range(k)]
                    self._post(client, [rows[i] for i in idx], [labels[i] for i in idx])

        threads = [threading.Thread(target=worker) for _ in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def start_continuous(self, df: pd.DataFrame) -> None:
        """Keep sending `df`'s rows until `stop_continuous` (traffic during a rollout)."""
        self._stop.clear()

        def loop() -> None:
            offset = 0
            while not self._stop.is_set():
                self.send(df, self.workers * 5, offset=offset)
                offset += self.workers * 5

        self._continuous = threading.Thread(target=loop, daemon=True)
        self._continuous.start()

    def stop_continuous(self) -> None:
        self._stop.set()
        if self._continuous is not None:
            self._continuous.join()
            self._continuous = None

    # --- labels ----------------------------------------------------------------------------------
    def _send_labels(self) -> None:
        while True:
            item = self._labels.get()
            if item is None:
                return
            due, version, rid, labels = item
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            url = self.server_for(version)
            if url is None:  # the version's server was stopped (rolled back or replaced)
                continue
            body = {
                "labels": [{"request_id": rid, "row": i, "label": y} for i, y in enumerate(labels)]
            }
            try:
                r = self._client.post(f"{url}/v1/models/{self.model}/feedback", json=body)
                if r.status_code == 200:
                    with self.log.lock:
                        self.log.labels_sent += r.json()["accepted"]
                else:
                    self.log.label_errors.append(r.text[:200])
            except httpx.HTTPError as e:
                self.log.label_errors.append(repr(e)[:200])

    def drain_labels(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._labels.empty() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(self.label_delay_s)

    def close(self) -> None:
        self.stop_continuous()
        self._labels.put(None)
        self._labeller.join(timeout=10)
        self._client.close()
