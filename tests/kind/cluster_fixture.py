"""A real kind cluster for the `kind` and `kfp` tests (tests/conftest.py shares the fixture), made
by the same steps a user runs:

  hack/ensure-docker.sh; make offline-build (hack/kind/build.sh: every upstream image built here,
  cached by version); docs/cluster.md's `make cluster images kind-load deploy`, read from the page
  (kind-config.yaml + kind-config.quirks.yaml; DEPLOY_STEPS: all but KFP)

with LOCAL_ENV switching the images to the local builds. Each stage's time, and the node's peak
memory, are printed at the end of the session. KEEP_KIND_CLUSTER=1 keeps the cluster afterwards;
KIND_REUSE_CLUSTER=1 installs on the running one instead of making a new one.
They run wherever the offline cache is complete (`hack/kind/build.sh --check`, about a second
warm) and Docker can run; MLOPS_KIND=1 runs them even when it is cold (building it first, about an
hour of Go compiles on 2 cores), MLOPS_KIND=0 skips them. Skipped otherwise, saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kind.cluster_harness import (
    CLUSTER_NAME,
    FACTS,
    PAGE_COMMANDS_RUN,
    ROOT,
    TIMINGS,
    kubectl,
    merged_kind_config,
    node_peak_memory_mb,
    read_env_file,
    run,
)

# `make deploy` without KFP: its images are built by hack/kfp/ (issue 16), not here.
DEPLOY_STEPS = os.environ.get(
    "KIND_TEST_DEPLOY_STEPS", "gateway kserve object-store prometheus project"
)


class KindCluster:
    def __init__(self, env: dict[str, str], local: dict[str, str]) -> None:
        self.env = env
        self.local = local

    def make(self, label: str, *targets: str, check: bool = True, **variables: str):
        args = [f"{k}={v}" for k, v in variables.items()]
        return run(label, ["make", *targets, *args], env=self.env, check=check)


def setup_command() -> str:
    """The command docs/cluster.md gives to make the cluster and install the platform."""
    from tests.docs.console_blocks import DOCS, page_commands

    (line,) = [
        c.line for c in page_commands(DOCS / "cluster.md") if c.line.startswith("make cluster")
    ]
    return line


def _stage_lines_since(mark: int) -> list[list[str]]:
    path = Path.home() / ".cache/mlops-platform/logs/stages.tsv"
    if "MLOPS_CACHE" in os.environ:
        path = Path(os.environ["MLOPS_CACHE"]) / "logs/stages.tsv"
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines()[mark:]]


def offline_cache_complete() -> bool:
    """Every image and tool `make offline-build` makes is in its cache (nothing to build)."""
    check = subprocess.run(
        ["bash", str(ROOT / "hack/kind/build.sh"), "--check"], capture_output=True
    )
    return check.returncode == 0


@pytest.fixture(scope="session")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    wanted = os.environ.get("MLOPS_KIND", "auto")
    if wanted == "0":
        pytest.skip("MLOPS_KIND=0: the kind cluster tests are switched off")
    if wanted != "1" and not offline_cache_complete():
        pytest.skip(
            "the offline build cache is not complete (make offline-build, about an hour of Go "
            "compiles on 2 cores; MLOPS_KIND=1 builds it first and runs these tests)"
        )
    docker = run("docker engine", ["bash", "hack/ensure-docker.sh"], check=False)
    if docker.returncode == 3:
        pytest.skip(f"no Docker engine and cannot start one here: {docker.stderr.strip()}")
    assert docker.returncode == 0, docker.stderr
    stages = Path.home() / ".cache/mlops-platform/logs/stages.tsv"
    mark = len(stages.read_text().splitlines()) if stages.exists() else 0
    env = os.environ | {"PYTHON_BIN": sys.executable}
    built = run("offline build", ["make", "--no-print-directory", "offline-build"], env=env)
    for _, stage, how, seconds in _stage_lines_since(mark):
        FACTS[f"build stage {stage}"] = f"{seconds} s ({how})"
    env_file = Path(built.stdout.strip().splitlines()[-1])
    local = read_env_file(env_file)
    config = merged_kind_config(tmp_path_factory.mktemp("kind") / "kind-config.yaml")
    env |= {"LOCAL_ENV": str(env_file), "KIND_CONFIG": str(config), "CLUSTER_NAME": CLUSTER_NAME}
    cluster = KindCluster(env, local)
    if os.environ.get("KIND_REUSE_CLUSTER") != "1":  # 1: keep a running cluster (development)
        subprocess.run(
            [local["KIND"], "delete", "cluster", "--name", CLUSTER_NAME], capture_output=True
        )
    try:
        # docs/cluster.md's command, as the page has it, with this machine's settings in `env`.
        setup = setup_command()
        run(
            f"{setup} (docs/cluster.md)",
            ["bash", "-c", setup],
            env=env | {"DEPLOY_STEPS": DEPLOY_STEPS},
        )
        PAGE_COMMANDS_RUN.add(setup)
        # A quirk of this node image: kubeadm's apiserver-kubelet-client user cannot read logs.
        kubectl(
            "create",
            "clusterrolebinding",
            "kubelet-api-admin-apiserver",
            "--clusterrole",
            "system:kubelet-api-admin",
            "--user",
            "kube-apiserver-kubelet-client",
            check=False,
        )
        yield cluster
    finally:
        peak = node_peak_memory_mb()
        if peak is not None:
            FACTS["node peak memory"] = f"{peak:.0f} MiB"
        if os.environ.get("KEEP_KIND_CLUSTER") != "1":
            run("make cluster-delete", ["make", "cluster-delete"], env=env, check=False)


def write_stage_table(  # type: ignore[no-untyped-def]
    terminalreporter, title: str, timings: dict[str, float], facts: dict[str, str], width: int
) -> None:
    """Each stage's time and the facts measured, at the end of a session that has any."""
    if timings or facts:
        terminalreporter.section(title)
        for label, seconds in timings.items():
            terminalreporter.write_line(f"{label:<{width}} {seconds:8.1f} s")
        for label, value in facts.items():
            terminalreporter.write_line(f"{label:<{width}} {value}")


def write_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    write_stage_table(terminalreporter, "kind cluster stages", TIMINGS, FACTS, 34)
