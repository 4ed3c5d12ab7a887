"""Shared by the KFP tests: where the project and the upstream sources are, and the hack/kfp calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack" / "kfp"
UPSTREAM = Path(os.environ.get("KFP_UPSTREAM", ROOT.parent / "shared" / "upstream" / "kfp"))
if not UPSTREAM.is_dir():
    UPSTREAM = Path("/work/shared/upstream/kfp")
TIMINGS: dict[str, float] = {}


def versions() -> dict[str, str]:
    """The pins of versions.mk (`NAME ?= value` lines without make functions)."""
    pins: dict[str, str] = {}
    for line in (ROOT / "versions.mk").read_text().splitlines():
        name, sep, value = line.partition("?=")
        if sep and "$(" not in value:
            pins[name.strip()] = value.strip()
    return pins


def script_env(**extra: str) -> dict[str, str]:
    pins = versions()
    env = os.environ | {"KFP_UPSTREAM": str(UPSTREAM)}
    for name in ("KFP_VERSION", "ARGO_WORKFLOWS_VERSION", "ML_METADATA_VERSION"):
        env[name] = pins[name]
    return env | extra


def run_hack(label: str, args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    """Run a hack/kfp script, timing it under `label` for the session's summary."""
    start = time.monotonic()
    result = subprocess.run(args, cwd=ROOT, env=script_env(**extra), capture_output=True, text=True)
    TIMINGS[label] = TIMINGS.get(label, 0.0) + time.monotonic() - start
    return result


def must(label: str, args: list[str], **extra: str) -> str:
    result = run_hack(label, args, **extra)
    assert result.returncode == 0, (
        f"{label} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result.stdout


def local_images() -> list[str]:
    """The tags hack/kfp/build-images.sh builds."""
    return must("list images", ["bash", str(HACK / "build-images.sh"), "list"]).split()


def missing_images() -> list[str]:
    if shutil.which("docker") is None:
        return local_images()
    return [
        tag
        for tag in local_images()
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0
    ]


def render(images: str, **extra: str) -> list[dict]:
    out = must(
        f"render ({images})",
        ["bash", str(HACK / "install.sh"), "render"],
        KFP_IMAGES=images,
        **extra,
    )
    return [doc for doc in yaml.safe_load_all(out) if doc]


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]
