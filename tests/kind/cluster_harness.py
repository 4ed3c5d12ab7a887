"""What the kind tests share: running the project's own make targets and hack scripts with
timing, kubectl as JSON, port-forwards, and the node container's peak memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_NAME = os.environ.get("KIND_TEST_CLUSTER", "mlops-test")
# The host port the gateway's node port is mapped to: not kind-config.yaml's 31080, so a user's own
# `make cluster` can run beside the tests.
GATEWAY_PORT = int(os.environ.get("KIND_TEST_GATEWAY_PORT", "31180"))
CONTEXT = f"kind-{CLUSTER_NAME}"
TIMINGS: dict[str, float] = {}
FACTS: dict[str, str] = {}
# The commands of docs/ pages a fixture ran as the page has them (a page's test skips them).
PAGE_COMMANDS_RUN: set[str] = set()


def run(
    label: str,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 3600,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a project command from the repository root; record its time under `label`."""
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    TIMINGS[label] = TIMINGS.get(label, 0.0) + time.monotonic() - start
    if check and result.returncode != 0:
        raise AssertionError(
            f"{label} failed ({result.returncode}): {' '.join(cmd)}\n"
            f"--- stdout (tail)\n{result.stdout[-4000:]}\n--- stderr (tail)\n{result.stderr[-6000:]}"
        )
    return result


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def merged_kind_config(out: Path) -> Path:
    """kind-config.yaml with the quirks overlay and the test's host port."""
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    quirks = yaml.safe_load((Path(__file__).parent / "kind-config.quirks.yaml").read_text())
    for node in config["nodes"]:
        for mapping in node.get("extraPortMappings", []):
            if mapping["containerPort"] == 31080:
                mapping["hostPort"] = GATEWAY_PORT
    config.setdefault("networking", {}).update(quirks.get("networking", {}))
    config["kubeadmConfigPatches"] = config.get("kubeadmConfigPatches", []) + quirks.get(
        "kubeadmConfigPatches", []
    )
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def kubectl(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--context", CONTEXT, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
    )


def gateway_client(host: str, timeout: float = 30) -> httpx.Client:
    """A client of the gateway's node port, addressed (Host header) to one InferenceService."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{GATEWAY_PORT}", headers={"Host": host}, timeout=timeout
    )


def kube_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def wait_for(what: str, probe: Any, timeout: float = 300, interval: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = probe()
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def port_forward(namespace: str, target: str, remote: int) -> Iterator[int]:
    """`kubectl port-forward` on 127.0.0.1; yields the local port. Kept up: when it exits (its pod
    replaced, the node restarted) it is started again on the same port, so that a fault test's
    clients reconnect as they would to a real endpoint."""
    local = free_port()
    stop = threading.Event()

    def keep_forwarding() -> None:
        while not stop.is_set():
            proc = subprocess.Popen(
                ["kubectl", "--context", CONTEXT, "port-forward", "-n", namespace,
                 "--address", "127.0.0.1", target, f"{local}:{remote}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            while proc.poll() is None and not stop.is_set():
                time.sleep(0.3)
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            stop.wait(1)

    keeper = threading.Thread(target=keep_forwarding, daemon=True)
    keeper.start()
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", local)) == 0

        wait_for(f"port-forward {namespace}/{target}", listening, timeout=30, interval=0.3)
        yield local
    finally:
        stop.set()
        keeper.join(timeout=15)


def node_peak_memory_mb() -> float | None:
    """Peak memory of the kind node container (its cgroup's high-water mark), in MiB."""
    cid = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", f"{CLUSTER_NAME}-control-plane"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for path in (
        f"/sys/fs/cgroup/memory/docker/{cid}/memory.max_usage_in_bytes",  # cgroup v1
        f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.peak",  # cgroup v2, systemd
        f"/sys/fs/cgroup/docker/{cid}/memory.peak",  # cgroup v2, cgroupfs
    ):
        with contextlib.suppress(OSError, ValueError):
            return int(Path(path).read_text()) / 2**20
    return None
