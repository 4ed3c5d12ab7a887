"""The probes of a hostile client, kept as tests against real `mlops serve` processes.

- the model repository API (load/unload) answers 404 unless enabled, then needs the token;
- write endpoints (label feedback) need the bearer token; predictions and reads stay open;
- readiness turns false when the model cannot serve;
- the server binds 127.0.0.1 unless told otherwise;
- a client that hangs up mid-body is not a 5xx and logs no traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.access_control import AccessPolicy
from serving.v1_instances import v1_instances
from tests.serving.harness import (
    MODEL,
    RegisteredModels,
    RunningServer,
    scoring_frame,
    start_server,
    stop_server,
)

TOKEN = "s3cr3t-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = f"/v1/models/{MODEL}:predict"
FEEDBACK = f"/v1/models/{MODEL}/feedback"
UNLOAD = f"/v2/repository/models/{MODEL}/unload"


def _serve(registered: RegisteredModels, log: Path, env: dict[str, str]) -> RunningServer:
    args = ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"]
    return start_server(args, {"MLOPS_AUDIT_DIR": str(log.parent), **env}, log)


@pytest.fixture(scope="module")
def guarded(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server as the manifests run it: a token set, the repository API left off."""
    log = tmp_path_factory.mktemp("guarded") / "server.log"
    running = _serve(registered, log, {"MLOPS_API_TOKEN": TOKEN})
    yield running
    assert stop_server(running) == 0, log.read_text()


def _predict(url: str, **kwargs: object) -> httpx.Response:
    body = {"instances": v1_instances(scoring_frame(2, seed=31))}
    return httpx.post(f"{url}{PREDICT}", json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_repository_api_is_off_and_the_model_stays_up(guarded: RunningServer) -> None:
    for path in (UNLOAD, f"/v2/repository/models/{MODEL}/load", "/v2/repository/index"):
        for headers in ({}, AUTH):
            r = httpx.post(f"{guarded.url}{path}", headers=headers)
            assert r.status_code == 404, (path, r.text)
            assert "repository API is off" in r.json()["error"]
    assert _predict(guarded.url).status_code == 200
    assert httpx.get(f"{guarded.url}/v2/health/ready").status_code == 200


def test_feedback_needs_the_bearer_token(guarded: RunningServer) -> None:
    answer = _predict(guarded.url).json()
    label = {"request_id": answer["request_id"], "label": 0}
    url = f"{guarded.url}{FEEDBACK}"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.post(url, json=label, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in r.json()["error"]
    r = httpx.post(url, json=label, headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    # Reads stay open: quality, metrics, health, metadata.
    for path in (
        f"/v1/models/{MODEL}/quality",
        "/metrics",
        "/v2/health/live",
        f"/v2/models/{MODEL}",
    ):
        assert httpx.get(f"{guarded.url}{path}").status_code == 200, path


def test_hostile_feedback_values_are_400_not_500(guarded: RunningServer) -> None:
    url = f"{guarded.url}{FEEDBACK}"
    rid = _predict(guarded.url).json()["request_id"]
    bodies = [
        b'{"request_id": "%s", "label": 1, "row": 1e400}' % rid.encode(),
        b'{"request_id": "%s", "label": 1, "row": Infinity}' % rid.encode(),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"labels": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ]
    for body in bodies:
        r = httpx.post(url, content=body, headers=AUTH)
        assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text)
    assert _predict(guarded.url).status_code == 200


def _listening_address(port: int) -> str:
    """The local address a LISTEN socket on `port` is bound to, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port_hex = local.split(":")
        if int(port_hex, 16) == port and state == "0A":
            return socket.inet_ntoa(bytes.fromhex(addr)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def test_the_server_binds_loopback_by_default(guarded: RunningServer) -> None:
    assert _listening_address(int(guarded.url.rsplit(":", 1)[1])) == "127.0.0.1"


def _metric(url: str, outcome: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "mlops_requests":
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("outcome") == outcome:
                    total += s.value
    return total


def test_client_disconnect_mid_body_is_not_a_server_error(guarded: RunningServer) -> None:
    fivexx = _metric(guarded.url, "5xx")
    fourxx = _metric(guarded.url, "4xx")
    port = int(guarded.url.rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 5000\r\n\r\n".encode()
                + b'{"instances": [[1, 2,'
            )
            time.sleep(0.2)  # the server is now waiting for the rest of the body
    deadline = time.monotonic() + 10
    while _metric(guarded.url, "4xx") < fourxx + 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _metric(guarded.url, "5xx") == fivexx
    assert _metric(guarded.url, "4xx") == fourxx + 3
    assert "Traceback" not in guarded.log.read_text()
    assert _predict(guarded.url).status_code == 200


def test_enabled_repository_api_needs_the_token_and_readiness_follows_the_model(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    env = {"MLOPS_API_TOKEN": TOKEN, "MLOPS_REPOSITORY_API": "true"}
    server = _serve(registered, log, env)
    try:
        assert httpx.post(f"{server.url}{UNLOAD}").status_code == 401
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        assert httpx.post(f"{server.url}{UNLOAD}", headers=AUTH).status_code == 200
        # The probe: after unload, readiness stayed 200 and no probe restarted the pod.
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert ready.status_code == 503 and "cannot serve" in ready.json()["error"]
        assert httpx.get(f"{server.url}/v1/models/{MODEL}").status_code >= 400  # the ISVC probe
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    finally:
        assert stop_server(server) == 0, log.read_text()


def test_repository_api_without_a_token_refuses_to_start(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    env = {**os.environ, "MLOPS_REPOSITORY_API": "true", "MLOPS_API_TOKEN": ""}
    mlops = str(Path(sys.executable).with_name("mlops"))
    out = subprocess.run(
        [mlops, "serve", "--model", MODEL, "--registry", registered.registry_uri],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "needs a token" in out.stderr and "Traceback" not in out.stderr


def test_bearer_check() -> None:
    policy = AccessPolicy(api_token=TOKEN)
    assert policy.authorised([(b"authorization", f"Bearer {TOKEN}".encode())])
    assert policy.authorised([(b"authorization", f"BEARER {TOKEN}".encode())])
    assert not policy.authorised([(b"authorization", f"Bearer {TOKEN}x".encode())])
    assert not policy.authorised([(b"authorization", f"Basic {TOKEN}".encode())])
    assert not policy.authorised([])
    assert AccessPolicy().authorised([])  # no token configured: open (local, on loopback)
