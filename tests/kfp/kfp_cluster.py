"""What the KFP cluster tests share: the cluster handle, port-forwards, facts for the summary."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.kfp.kfp_stack import ROOT, must

CLUSTER = os.environ.get("KFP_TEST_CLUSTER", "mlops-test")
CONTEXT = f"kind-{CLUSTER}"
LOCAL_ENV = Path(
    os.environ.get("LOCAL_ENV", Path.home() / ".cache" / "mlops-platform" / "kind" / "local.env")
)
FACTS: dict[str, str] = {}


@dataclass(frozen=True)
class KfpCluster:
    context: str
    host: str
    env: dict[str, str]

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--context", self.context, *args],
            capture_output=True,
            text=True,
            check=check,
        )

    def make(self, label: str, *args: str) -> str:
        return must(label, ["make", *args, f"KFP_HOST={self.host}"], **self.env)

    def register(self, model: str, seed: int, scratch: Path) -> int:
        """A version of `model` in the cluster's registry, trained on the churn generator (3,000
        rows, `seed`), through `make store` as a user would register one; its number."""
        script = scratch / f"register_{model}_{seed}.py"
        script.write_text(
            "import os\n"
            "from mlops_core.registry import ModelRegistry\n"
            "from mlops_demo.train_and_register import train_and_register\n"
            "registry = ModelRegistry(os.environ['MLOPS_REGISTRY_URI'])\n"
            f"print(train_and_register(registry, {model!r}, rows=3000, seed={seed}))\n"
        )
        python = ROOT / ".venv" / "bin" / "python"
        # No "Entering directory" lines: under `make test` this make is a sub-make.
        out = self.make(
            f"register {model}", "--no-print-directory", "store", f"CMD={python} {script}"
        )
        return next(int(line) for line in reversed(out.splitlines()) if line.strip().isdigit())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def port_forward(context: str, namespace: str, target: str, remote: int) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["kubectl", "--context", context, "port-forward", "-n", namespace, "--address", "127.0.0.1",
         target, f"{port}:{remote}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def local_env() -> dict[str, str]:
    """The offline build's environment (SEAWEEDFS_IMAGE, KIND, ...), when it ran here."""
    if not LOCAL_ENV.is_file():
        return {}
    return dict(line.split("=", 1) for line in LOCAL_ENV.read_text().splitlines() if "=" in line)


def node_peak_memory_mb() -> float | None:
    cid = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", f"{CLUSTER}-control-plane"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for path in (
        f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes",
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak",
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(path).read_text()) / 2**20
    return None
