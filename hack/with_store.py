"""`make store CMD='...'`: run a command with the cluster's object store at hand.

The store is the one the pipeline's steps write to (`pipelines.training.ObjectStore`: KFP's
SeaweedFS and its credentials Secret). This opens a port-forward to it on a free local port, runs
CMD with `.venv/bin` first on PATH, the Secret's keys as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL at the port-forward and MLOPS_REGISTRY_URI at the cluster's registry, and closes
the port-forward when CMD ends. Its exit status is CMD's.

Usage: with_store.py CMD   (e.g. 'mlops registry list --model cars')
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from pipelines.training import ObjectStore


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def kubectl(*args: str) -> str:
    try:
        done = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        fail("make store needs kubectl: not found on PATH")
    if done.returncode != 0:
        fail(f"kubectl {' '.join(args[:3])}: {done.stderr.strip()} (is `make deploy` done?)")
    return done.stdout


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        fail("usage: make store CMD='<command>' (e.g. CMD='mlops registry list --model cars')")
    store = ObjectStore()
    endpoint = urlsplit(store.endpoint_url)
    service, _, namespace = (endpoint.hostname or "").partition(".")
    secret = json.loads(kubectl("get", "secret", store.secret_name, "-n", namespace, "-o", "json"))
    key, secret_key = (
        base64.b64decode(secret["data"][field]).decode()
        for field in (store.access_key_field, store.secret_key_field)
    )
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        forward = subprocess.Popen(
            ["kubectl", "port-forward", "-n", namespace, f"svc/{service}", f":{endpoint.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            port = None
            deadline = time.monotonic() + 30
            while port is None and forward.poll() is None and time.monotonic() < deadline:
                # kubectl prints "Forwarding from 127.0.0.1:PORT -> 9000" once the port listens.
                found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", Path(log.name).read_text())
                port = found and found.group(1)
                time.sleep(0.2)
            if not port:
                fail(f"cannot port-forward to {namespace}/{service}: {Path(log.name).read_text()}")
            print(
                f"object store: {namespace}/{service} on http://127.0.0.1:{port} "
                "(port-forward, closed at the end)",
                file=sys.stderr,
            )
            venv_bin = Path(sys.executable).parent
            env = os.environ | {
                "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret_key,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "MLOPS_REGISTRY_URI": store.registry_uri,
            }
            env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
            return subprocess.run(["bash", "-c", argv[0]], env=env, check=False).returncode
        finally:
            forward.terminate()
            forward.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
