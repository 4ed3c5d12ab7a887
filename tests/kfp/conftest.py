"""KFP on a kind cluster, installed by the same hack/kfp/install.sh that `make deploy` runs.

The cluster is the kind tests' (`KFP_TEST_CLUSTER`, default mlops-test: the shared `kind_cluster`
fixture makes it with gateway, KServe, SeaweedFS, Prometheus and the project; KEEP_KIND_CLUSTER=1
keeps it). KFP_REUSE_CLUSTER=1 installs on a running cluster of that name instead of remaking it
(a kept one, or one `make cluster deploy` made), after loading this checkout's images into it.
KFP's images come from the local cache (`make kfp-images`): while it is cold the tests skip and
say so, because building it takes longer than CI allows beside everything else; MLOPS_KFP=0
switches them off.

Each install stage's time and the node's peak memory are printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.kfp.kfp_cluster import (
    CLUSTER,
    CONTEXT,
    FACTS,
    LOCAL_ENV,
    KfpCluster,
    local_env,
    node_peak_memory_mb,
    port_forward,
)
from tests.kfp.kfp_stack import TIMINGS, missing_images, must
from tests.kind.cluster_fixture import write_stage_table


@pytest.fixture(scope="session")
def kfp_cluster(request: pytest.FixtureRequest) -> Iterator[KfpCluster]:
    if os.environ.get("MLOPS_KFP") == "0":
        pytest.skip("MLOPS_KFP=0: the KFP cluster tests are switched off")
    missing = missing_images()
    if missing:
        # Building them (make kfp-images, which make test-kfp runs first) takes longer cold than
        # CI allows beside everything else.
        pytest.skip(f"KFP image cache is cold ({len(missing)} images missing): run make kfp-images")
    reuse = os.environ.get("KFP_REUSE_CLUSTER") == "1"
    if not reuse:
        # The kind tests' cluster fixture (tests/conftest.py shares it): it (re)makes the cluster
        # (make cluster, images kind-load, deploy with all steps but kfp) KFP is installed on here.
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
        # The tag the images were built and loaded with, kept for `make run` even if HEAD moves.
        "IMAGE_TAG": subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "dev",
    }
    subprocess.run(["kubectl", "config", "use-context", CONTEXT], check=True, capture_output=True)
    if reuse:
        # A cluster made earlier runs older images: load this checkout's (the golden YAML's steps
        # import this checkout's components/ in them).
        local = {"LOCAL_ENV": str(LOCAL_ENV)} if LOCAL_ENV.is_file() else {}
        must(
            "make images kind-load",
            ["make", "images", "kind-load", "CLUSTER=kind"],
            **env,
            **local,
        )
    must("kfp install (hack/kfp/install.sh)", ["bash", "hack/kfp/install.sh", "install"], **env)
    with port_forward(CONTEXT, "kubeflow", "svc/ml-pipeline", 8888) as port:
        yield KfpCluster(CONTEXT, f"http://127.0.0.1:{port}", env)
    peak = node_peak_memory_mb()
    if peak is not None:
        FACTS["kind node peak memory"] = f"{peak:.0f} MiB"


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    write_stage_table(terminalreporter, "KFP stage timings", TIMINGS, FACTS, 44)
