"""The local router and a canary it cannot reach (issue 25): the probe saw every request routed
to a killed canary answered 502 for the whole analysis (about 90 s at the default policy). Real
upstream processes, the real router on uvicorn, real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from mlops_control.traffic.model_server_process import ModelServerProcess, free_port
from mlops_control.traffic.router import RouterConfig, TrafficRouter

# A stand-in model server: answers 200 on every path (its readiness endpoint included).
UPSTREAM = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"predictions": [1]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
    """
)


def _upstream(version: str, port: int, log: Path) -> ModelServerProcess:
    process = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/v2/health/ready", timeout=1)
            return ModelServerProcess("m", version, url, process, log)
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the stand-in model server did not start")


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[TrafficRouter, str]]:
    config = RouterConfig(model="m", registry_uri=str(tmp_path / "reg"), log_dir=tmp_path)
    router = TrafficRouter(config)
    router.stable = _upstream("1", free_port(), tmp_path / "1.log")
    router.canary = _upstream("2", free_port(), tmp_path / "2.log")
    router.canary_percent = 50
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(router, host="127.0.0.1", port=port, log_level="error"))

    async def serve() -> None:
        router.client = httpx.AsyncClient(timeout=10)
        await server.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield router, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    for side in (router.stable, router.canary):
        if side is not None and side.process.poll() is None:
            side.process.kill()
            side.process.wait()


def _send(url: str, n: int) -> Counter[str]:
    """n predictions through the router: how many each side answered, and how many failed."""
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            r = client.post(f"{url}/v1/models/m:predict", json={"instances": [[1.0]]})
            seen[r.headers.get("x-routed-to", "?") if r.status_code == 200 else "failed"] += 1
    return seen


def test_a_dead_canarys_share_goes_to_the_stable_until_it_answers_again(router) -> None:
    r, url = router
    before = _send(url, 100)
    assert before["failed"] == 0 and before["canary"] > 20  # a 50% canary is in the route
    canary = r.canary
    os.kill(canary.process.pid, signal.SIGKILL)
    canary.process.wait()
    while_dead = _send(url, 400)
    print(f"\nwith the canary killed: {while_dead['failed']} of 400 requests failed")
    assert while_dead["failed"] == 0, while_dead  # the probe: ~200 of 400 answered 502
    assert while_dead["stable"] == 400
    state = httpx.get(f"{url}/router/state").json()
    assert state["canary_reachable"] is False and state["counts"]["canary_unreachable"] >= 1
    refused = httpx.post(f"{url}/router/promote")
    assert refused.status_code == 409 and "unreachable" in refused.text

    # The canary comes back on its port: the probe puts it back in the route.
    port = int(canary.url.rsplit(":", 1)[1])
    back = _upstream("2", port, canary.log)
    canary.process = back.process
    deadline = time.monotonic() + 20
    while not httpx.get(f"{url}/router/state").json()["canary_reachable"]:
        assert time.monotonic() < deadline, "the router never took the canary back"
        time.sleep(0.1)
    again = _send(url, 100)
    assert again["failed"] == 0 and again["canary"] > 20
