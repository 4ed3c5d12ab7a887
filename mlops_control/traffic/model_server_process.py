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
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mlops_core.errors import MlopsError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mlops_executable() -> list[str]:
    script = Path(sys.executable).with_name("mlops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mlops.cli"]


class ModelServerError(MlopsError):
    """A model server process did not start or become ready; the message has its log tail."""


# How much a starting process may take, in CPU seconds (it and its children) rather than wall
# seconds: on a loaded machine a cold start (importing scipy, kserve, xgboost; loading the model)
# takes several times longer in wall time, but about the same CPU time. A model server takes about
# 10 CPU-seconds to answer ready on a quiet machine; the router, itself and its stable's server.
STARTUP_CPU_BUDGET_S = 120.0
# A starting process that gets no CPU at all for this long is stuck (a lock, a dead socket),
# not slow: it is given up on however much of its budget is left.
STARTUP_STALL_S = 60.0


def process_tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by `pid`, its live descendants and the children
    they reaped; None where /proc cannot be read (not Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, cpu seconds)
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
        # state, ppid, ..., utime (14th field of the file), stime, cutime, cstime
        cpu = sum(int(f) for f in fields[11:15]) / tick
        stats[int(entry)] = (int(fields[1]), cpu)
    if pid not in stats:
        return None
    total, frontier = 0.0, [pid]
    while frontier:
        current = frontier.pop()
        total += stats[current][1]
        frontier.extend(p for p, (ppid, _) in stats.items() if ppid == current)
    return total


@dataclass
class StartupProgress:
    """Decides when to give up on a starting process: when it exited, when it (with its children)
    used `cpu_budget_s` CPU seconds without becoming ready, or when it got no CPU for `stall_s`.
    The wall clock alone decides only where /proc cannot be read, or past `wall_cap_s`."""

    process: subprocess.Popen[bytes]
    what: str
    cpu_budget_s: float = STARTUP_CPU_BUDGET_S
    stall_s: float = STARTUP_STALL_S
    wall_cap_s: float | None = None
    started: float = field(default_factory=time.monotonic)
    _cpu_at_start: float | None = None
    _last_cpu: float = 0.0
    _last_progress: float = 0.0

    def __post_init__(self) -> None:
        self._cpu_at_start = process_tree_cpu_s(self.process.pid)
        self._last_cpu = self._cpu_at_start or 0.0
        self._last_progress = self.started

    def give_up(self) -> str | None:
        """Why the start failed, or None while it may still succeed."""
        now = time.monotonic()
        if self.process.poll() is not None:
            return f"{self.what} exited with {self.process.returncode}"
        if self.wall_cap_s is not None and now - self.started > self.wall_cap_s:
            return f"{self.what} did not become ready in {self.wall_cap_s:.0f} s"
        cpu = process_tree_cpu_s(self.process.pid)
        if cpu is None or self._cpu_at_start is None:
            # No /proc: the CPU budget, counted in wall seconds, is the limit.
            if now - self.started > self.cpu_budget_s:
                return f"{self.what} did not become ready in {self.cpu_budget_s:.0f} s"
            return None
        if cpu - self._cpu_at_start > self.cpu_budget_s:
            return (
                f"{self.what} used {cpu - self._cpu_at_start:.0f} CPU-seconds in "
                f"{now - self.started:.0f} s without becoming ready"
            )
        if cpu > self._last_cpu + 0.05:
            self._last_cpu, self._last_progress = cpu, now
        elif now - self._last_progress > self.stall_s:
            return (
                f"{self.what} got no CPU time for {self.stall_s:.0f} s and is not ready "
                f"(stuck, not slow; {cpu - self._cpu_at_start:.1f} CPU-seconds used)"
            )
        return None


def wait_for_http_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    what: str,
    timeout_s: float | None = None,
    cpu_budget_s: float = STARTUP_CPU_BUDGET_S,
) -> None:
    """Block until `url` answers 200; fail with the log's tail if the process exits, or gives up
    by `StartupProgress` (its CPU budget, a stall; `timeout_s`, if given, caps the wall time).

    For callers outside an event loop (the demo, tests, benchmarks); the router awaits its own
    children with `ModelServerProcess.wait_ready`.
    """
    progress = StartupProgress(process, what, cpu_budget_s=cpu_budget_s, wall_cap_s=timeout_s)
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        reason = progress.give_up()
        if reason is not None:
            if process.poll() is None:
                process.kill()
                process.wait()
            raise ModelServerError(f"{reason}; log {log}:\n{_tail(log)}")
        time.sleep(0.3)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


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

    async def wait_ready(
        self, timeout_s: float | None = None, cpu_budget_s: float = STARTUP_CPU_BUDGET_S
    ) -> None:
        """Until /v2/health/ready answers 200, judged by `StartupProgress` (not a fixed wall
        clock, which a loaded machine overruns; `timeout_s`, if given, caps it)."""
        what = f"model server for {self.model} v{self.version}"
        progress = StartupProgress(
            self.process, what, cpu_budget_s=cpu_budget_s, wall_cap_s=timeout_s
        )
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                try:
                    r = await client.get(f"{self.url}/v2/health/ready")
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                reason = await asyncio.to_thread(progress.give_up)  # reads /proc: off the loop
                if reason is not None:
                    break
                await asyncio.sleep(0.3)
        self.stop()
        raise ModelServerError(f"{reason}; log {self.log}:\n{self._log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
