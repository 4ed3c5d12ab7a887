"""Micro-batching: concurrent requests share model calls and each gets its own rows' answers."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from components.train import model_input
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.registry import ModelRegistry
from serving.micro_batcher import MicroBatcher
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, RunningServer, scoring_frame


class CountingModel:
    """Row sums as the 'prediction', counting calls and batch sizes."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self.batches.append(rows.shape[0])
        return rows.sum(axis=1)


async def _run(batcher: MicroBatcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    try:
        return await asyncio.gather(*(batcher.predict(r) for r in requests))
    finally:
        batcher.close()


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    model = CountingModel()
    requests = [np.full((k % 3 + 1, 2), float(k)) for k in range(20)]
    results = asyncio.run(_run(MicroBatcher(model, max_rows=1000), requests))
    for r, out in zip(requests, results, strict=True):
        np.testing.assert_array_equal(out, r.sum(axis=1))
    assert model.batches == [sum(r.shape[0] for r in requests)]


def test_batches_respect_the_row_cap() -> None:
    model = CountingModel()
    requests = [np.ones((1, 2)) * k for k in range(20)]
    asyncio.run(_run(MicroBatcher(model, max_rows=5), requests))
    assert model.batches == [5, 5, 5, 5]


def test_a_model_failure_reaches_every_waiting_request_and_the_next_batch_runs() -> None:
    calls = []

    def flaky(rows: np.ndarray) -> np.ndarray:
        calls.append(rows.shape[0])
        if len(calls) == 1:
            raise RuntimeError("model blew up")
        return rows.sum(axis=1)

    async def scenario() -> tuple[list[object], np.ndarray]:
        batcher = MicroBatcher(flaky, max_rows=100)
        try:
            first = await asyncio.gather(
                *(batcher.predict(np.ones((1, 2))) for _ in range(3)), return_exceptions=True
            )
            second = await batcher.predict(np.ones((1, 2)))
            return first, second
        finally:
            batcher.close()

    first, second = asyncio.run(scenario())
    assert all(isinstance(e, RuntimeError) and "blew up" in str(e) for e in first)
    np.testing.assert_array_equal(second, [2.0])


@pytest.mark.slow
def test_concurrent_http_requests_each_get_their_own_predictions(
    server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(40, seed=41)
    pipeline = ModelRegistry(registered.registry_uri).load_model(MODEL, registered.xgboost_version)
    expected = pipeline.predict_proba(model_input(df, CHURN_SCHEMA))[:, 1]
    rows = v1_instances(df)
    chunks = [(i, rows[i : i + (i % 4) + 1]) for i in range(0, 36, 4)]

    async def fire() -> list[tuple[int, httpx.Response]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            responses = await asyncio.gather(
                *(
                    client.post(f"/v1/models/{MODEL}:predict", json={"instances": chunk})
                    for _, chunk in chunks
                    for _ in range(3)
                )
            )
        starts = [start for start, _ in chunks for _ in range(3)]
        return list(zip(starts, responses, strict=True))

    for start, r in asyncio.run(fire()):
        assert r.status_code == 200, r.text
        got = [p["probability"] for p in r.json()["predictions"]]
        np.testing.assert_allclose(got, expected[start : start + len(got)], rtol=1e-6, atol=1e-7)
