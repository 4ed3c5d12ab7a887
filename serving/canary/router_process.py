"""The local canary router (`mlops canary router`) as a child process: started, waited for until
it answers, and stopped with SIGTERM (it stops its model servers in turn)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from serving.canary.model_server_process import free_port, mlops_executable, wait_for_http_ready


@dataclass
class RouterProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, model: str, version: str, registry_uri: str, work_dir: Path, timeout_s: float = 120
    ) -> RouterProcess:
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
            f"{url}/router/state", proc, log, timeout_s=timeout_s, what="the local router"
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
