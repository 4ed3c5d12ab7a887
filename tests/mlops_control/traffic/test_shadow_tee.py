"""The shadow tee copies off the client's path: a slow or failing shadow costs dropped or failed
copies, never the caller's time. Real HTTP on 127.0.0.1: a shadow that sleeps, one that answers
500, one that answers like a model server."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mlops_control.traffic.model_server_process import free_port
from mlops_control.traffic.shadow_tee import MIRROR_LOG, ShadowTee, first_score
from mlops_core.jsonl_log import read_json_lines
from serving.prediction_observer import SHADOW_HEADER

SEEN: list[dict[str, str]] = []


async def shadow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    SEEN.append(headers)
    status, body = 200, json.dumps({"predictions": [{"probability": 0.25, "label": 0}]}).encode()
    if scope["path"].startswith("/slow"):
        await asyncio.sleep(2.0)
    elif scope["path"].startswith("/fail"):
        status, body = 500, b"{}"
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def shadow_url() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(shadow_app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/up", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def _copies(shadow_url: str, tmp_path: Path, paths: list[str], **tee_args: Any) -> ShadowTee:
    primary = json.dumps({"predictions": [{"probability": 0.75, "label": 1}]}).encode()

    async def run() -> tuple[ShadowTee, float]:
        tee = ShadowTee.open("9", shadow_url, 100, tmp_path)
        for k, v in tee_args.items():
            setattr(tee, k, v)
        async with httpx.AsyncClient() as client:
            started = time.perf_counter()
            for i, path in enumerate(paths):
                request = client.build_request(
                    "POST",
                    f"http://primary{path}",
                    content=b"{}",
                    headers={"x-request-id": f"r{i}"},
                )
                tee.copy(client, request, "8", primary, 0.01)
            spent = time.perf_counter() - started
            while tee._tasks:
                await asyncio.sleep(0.05)
        return tee, spent

    tee, spent = asyncio.run(run())
    assert spent < 0.1, f"copying took {spent:.3f} s of the caller's time"
    return tee


def test_answers_are_paired_by_request_id_and_marked(shadow_url: str, tmp_path: Path) -> None:
    SEEN.clear()
    tee = _copies(shadow_url, tmp_path, ["/v1/models/m:predict"] * 3)
    lines = list(read_json_lines(tmp_path / MIRROR_LOG))
    assert {d["request_id"] for d in lines} == {"r0", "r1", "r2"}
    assert all(d["primary"] == 0.75 and d["shadow"] == 0.25 and d["error"] is None for d in lines)
    assert all(h.get(SHADOW_HEADER) == "1" for h in SEEN)
    assert {h["x-request-id"] for h in SEEN} == {"r0", "r1", "r2"}
    assert tee.counts == {"copied": 3, "answered": 3, "failed": 0, "dropped": 0}


def test_a_slow_or_failing_shadow_is_recorded_and_a_full_tee_drops(
    shadow_url: str, tmp_path: Path
) -> None:
    tee = _copies(
        shadow_url, tmp_path, ["/slow", "/slow", "/fail", "/slow"], timeout_s=0.3, max_in_flight=3
    )
    lines = list(read_json_lines(tmp_path / MIRROR_LOG))
    assert tee.counts == {"copied": 3, "answered": 0, "failed": 3, "dropped": 1}
    assert sorted(d["error"][:8] for d in lines) == ["HTTP 500", "ReadTime", "ReadTime"]
    assert all(d["shadow"] is None and d["shadow_latency_s"] is None for d in lines)


def test_first_score_reads_each_task() -> None:
    def body(p: dict[str, Any]) -> bytes:
        return json.dumps({"predictions": [p]}).encode()

    assert first_score(body({"probability": 0.3, "label": 0})) == 0.3
    assert first_score(body({"value": 12.5})) == 12.5
    assert first_score(body({"label": "b", "probabilities": {"a": 0.2, "b": 0.7, "c": 0.1}})) == 1
    assert first_score(b"not json") is None and first_score(b'{"predictions": []}') is None
