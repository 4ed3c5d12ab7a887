"""The upstream sources the cluster files are checked against, at the pinned versions:
../shared/upstream's KServe and KFP source tarballs (KSERVE_SOURCE_COMMIT, KFP_VERSION) and Go
modules from the module cache or proxy (kind, Traefik, Gateway API). Never copied into the project:
read in place or extracted into a temporary directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "versions.mk").read_text().splitlines():
        if m := re.match(r"^([A-Z_]+)\s*\?=\s*(\S+)", line):
            out[m.group(1)] = m.group(2)
    return out


def shared_upstream() -> Path:
    for candidate in (ROOT.parent / "shared" / "upstream", Path("/work/shared/upstream")):
        if candidate.is_dir():
            return candidate
    pytest.skip("../shared/upstream (the KServe and KFP sources) is not on this machine")


def _tarball(project: str, name: str, version: str) -> Path:
    base = shared_upstream() / project
    readme = (base / "README.md").read_text()
    assert version in readme, f"{base}/README.md does not name {version} (versions.mk)"
    return base / name


def extract(project: str, name: str, version: str, member_prefix: str, dest: Path) -> Path:
    """Extract the members under `member_prefix` of an upstream tarball into `dest`."""
    with tarfile.open(_tarball(project, name, version)) as tf:
        members = [m for m in tf.getmembers() if m.name.lstrip("./").startswith(member_prefix)]
        assert members, f"{name} has nothing under {member_prefix}"
        tf.extractall(dest, members=members, filter="data")
    return dest


def read_member(project: str, name: str, version: str, path: str) -> str:
    with tarfile.open(_tarball(project, name, version)) as tf:
        for member in tf.getmembers():
            if member.name.lstrip("./") == path:
                data = tf.extractfile(member)
                assert data is not None
                return data.read().decode()
    raise AssertionError(f"{path} is not in {name}")


def kserve_file(path: str) -> str:
    return read_member("kserve", "kserve-src.tar.gz", pins()["KSERVE_SOURCE_COMMIT"], path)


def kfp_file(path: str) -> str:
    return read_member("kfp", "kfp-src.tar.gz", f"`{pins()['KFP_VERSION']}`", path)


@cache
def go_module_dir(module: str, version: str) -> Path:
    """A Go module's source at a version (module cache, else the module proxy)."""
    if shutil.which("go") is None:
        pytest.skip("go is not installed: cannot read the Go module " + module)
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        cwd="/tmp",
        env={**__import__("os").environ, "GOFLAGS": "-mod=mod"},
    )
    if result.returncode != 0:
        pytest.skip(f"go mod download {module}@{version} failed: {result.stderr.strip()[:200]}")
    return Path(json.loads(result.stdout)["Dir"])
