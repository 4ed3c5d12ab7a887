"""KFP on a kind cluster, installed by the same hack/kfp/install.sh that `make deploy` runs.

The cluster is the kind tests' (`KFP_TEST_CLUSTER`, default mlops-test: tests/kind makes it with
gateway, KServe, SeaweedFS, Prometheus and the project; KEEP_KIND_CLUSTER=1 keeps it), or any
kind cluster named so that `make cluster deploy` made. KFP's images come from the local cache
(`make kfp-images`): while it is cold the tests skip and say so, because building it takes longer
than CI allows beside everything else.

Each install stage's time and the node's peak memory are printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from tests.kfp.kfp_cluster import (
    CLUSTER,
    CONTEXT,
    FACTS,
    KfpCluster,
    local_env,
    node_peak_memory_mb,
    port_forward,
)
from tests.kfp.kfp_stack import TIMINGS, missing_images, must


@pytest.fixture(scope="session")
def kfp_cluster(request: pytest.FixtureRequest) -> Iterator[KfpCluster]:
    missing = missing_images()
    if missing:
        pytest.skip(f"KFP image cache is cold ({len(missing)} images missing): run make kfp-images")
    # The kind tests' cluster fixture, when a conftest above this one shares it: it makes the
    # cluster (make cluster deploy, all steps but kfp) that KFP is installed on here.
    with contextlib.suppress(pytest.FixtureLookupError):
        request.getfixturevalue("kind_cluster")
    reach = subprocess.run(
        ["kubectl", "--context", CONTEXT, "get", "--raw", "/readyz"], capture_output=True, text=True
    )
    if reach.returncode != 0:
        pytest.skip(
            f"no kind cluster {CLUSTER}: the kind tests make it (KEEP_KIND_CLUSTER=1 keeps it), "
            "or make cluster deploy CLUSTER_NAME=" + CLUSTER
        )
    built = local_env()
    env = {
        "KFP_IMAGES": "local",
        "CLUSTER_NAME": CLUSTER,
        "KIND": built.get("KIND", "kind"),
        "SEAWEEDFS_IMAGE": built.get("SEAWEEDFS_IMAGE", ""),
    }
    subprocess.run(["kubectl", "config", "use-context", CONTEXT], check=True, capture_output=True)
    must("kfp install (hack/kfp/install.sh)", ["bash", "hack/kfp/install.sh", "install"], **env)
    with port_forward(CONTEXT, "kubeflow", "svc/ml-pipeline", 8888) as port:
        yield KfpCluster(CONTEXT, f"http://127.0.0.1:{port}", env)
    peak = node_peak_memory_mb()
    if peak is not None:
        FACTS["kind node peak memory"] = f"{peak:.0f} MiB"


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if TIMINGS or FACTS:
        terminalreporter.section("KFP stage timings")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label:<44} {seconds:8.1f} s")
        for label, value in FACTS.items():
            terminalreporter.write_line(f"{label:<44} {value}")
