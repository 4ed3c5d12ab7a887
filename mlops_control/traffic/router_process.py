"""The local canary router (`mlops canary router`) as a child process: started, waited for until
it answers, and stopped with SIGTERM (it stops its model servers in turn)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlops_control.traffic.model_server_process import (
    STARTUP_CPU_BUDGET_S,
    free_port,
    mlops_executable,
    wait_for_http_ready,
)


@dataclass
class RouterProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls,
        model: str,
        version: str,
        registry_uri: str,
        work_dir: Path,
        cpu_budget_s: float = STARTUP_CPU_BUDGET_S,
    ) -> RouterProcess:
        """Start the router and wait until it answers, which is after its stable's model server
        is ready: two cold Python processes in a row. Judged by the CPU they get, not by the
        wall clock (see `StartupProgress`), so a loaded machine makes it slower, not failed."""
        port = free_port()
        work_dir.mkdir(parents=True, exist_ok=True)
        log = work_dir / "router.log"
        cmd = [*mlops_executable(), "canary", "router", "--model", model, "--version", version]
        cmd += ["--registry", registry_uri, "--port", str(port)]
        env = {**os.environ, "MLOPS_WORK_DIR": str(work_dir)}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_for_http_ready(
            f"{url}/router/state", proc, log, cpu_budget_s=cpu_budget_s, what="the local router"
        )
        return cls(url, proc, log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
