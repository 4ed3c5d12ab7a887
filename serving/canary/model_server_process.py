"""A local model server as a child process: `mlops serve` for one registered version.

The local router starts one per version it routes to (the way Knative starts a revision's pods)
and stops it when the version leaves the route.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mlops_core.errors import MlopsError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlops_executable() -> list[str]:
    script = Path(sys.executable).with_name("mlops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops.cli"]


class ModelServerError(MlopsError):
    """A model server process did not start or become ready; the message has its log tail."""


def wait_for_http_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, *, timeout_s: float, what: str
) -> None:
    """Block until `url` answers 200; fail with the log's tail if the process exits or time runs out.

    For callers outside an event loop (the demo, tests, benchmarks); the router awaits its own
    children with `ModelServerProcess.wait_ready`.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ModelServerError(
                f"{what} exited with {process.returncode}:\n{log.read_text(errors='replace')[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise ModelServerError(f"{what} did not become ready in {timeout_s:.0f} s; log {log}")


@dataclass
class ModelServerProcess:
    model: str
    version: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def spawn(
        cls, model: str, version: str, registry_uri: str, log_dir: Path, extra_env: dict[str, str]
    ) -> ModelServerProcess:
        port = free_port()
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{model}-v{version}-{port}.log"
        env = {**os.environ, **extra_env, "MLOPS_SERVE_PORT": str(port)}
        cmd = [*mlops_executable(), "serve", "--model", model, "--version", version]
        cmd += ["--registry", registry_uri, "--port", str(port)]
        with log.open("wb") as out:
            process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        return cls(model, version, f"http://127.0.0.1:{port}", process, log)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ModelServerError(
                        f"model server for {self.model} v{self.version} exited with "
                        f"{self.process.returncode}; log {self.log}:\n{self._log_tail()}"
                    )
                try:
                    r = await client.get(f"{self.url}/v2/health/ready")
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        self.stop()
        raise ModelServerError(
            f"model server for {self.model} v{self.version} not ready in {timeout_s:.0f} s; "
            f"log {self.log}:\n{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
