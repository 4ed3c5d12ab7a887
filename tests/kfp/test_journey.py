"""The journey a user types, on the kind cluster with KFP: docs/journey.md's commands, block by
block, as the page shows them (tests/docs/console_blocks.py), in a scratch checkout with this
checkout's .venv. Their own CSV put in the cluster's store, `make upload`, `make run` on it until
the deploy step serves it, a second run's canary taken to promotion by `make canary` on traffic
sent through the gateway, and the champion moved back with `mlops registry rollback`. No step the
page does not show.

The images are this checkout's, built and loaded by the cluster fixture: the page's `make`
targets get that tag (IMAGE_TAG), as in the checkout that ran `make images kind-load`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.docs.console_blocks import (
    DOCS,
    REPO,
    PageShell,
    page_environment,
    run_page,
    scratch_checkout,
)
from tests.kfp.kfp_cluster import FACTS, KfpCluster
from tests.kfp.test_kfp_api import STORE, object_store, remove_tree
from tests.kind.cluster_harness import PAGE_COMMANDS_RUN

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

PAGE = DOCS / "journey.md"
MODEL = "customers"  # the page's model


def page_shell(root: Path, cluster: KfpCluster) -> PageShell:
    return PageShell(
        cwd=scratch_checkout(root, more=("hack", "pipelines", "kind-config.yaml")),
        env=page_environment(REPO / ".venv" / "bin", {"IMAGE_TAG": cluster.env["IMAGE_TAG"]}),
        done=frozenset(PAGE_COMMANDS_RUN),
    )


def forget_model(cluster: KfpCluster, model: str) -> None:
    """No InferenceService and no registered version of `model`: a page starts from a model the
    cluster has never seen (the kind tests, or a kept cluster, may have served one)."""
    cluster.kubectl("delete", "isvc", model, "-n", "mlops", "--ignore-not-found", check=False)
    with object_store(cluster) as fs:
        remove_tree(fs, f"{STORE.registry_uri.removeprefix('s3://')}/{model}")


def test_the_kfp_page_runs_on_the_cluster_as_typed(kfp_cluster: KfpCluster, tmp_path: Path) -> None:
    """docs/kfp.md: the UI's port-forward and `make upload`."""
    run_page(DOCS / "kfp.md", page_shell(tmp_path / "checkout", kfp_cluster))


def test_the_cluster_pages_run_on_the_cluster_as_typed(
    kfp_cluster: KfpCluster, tmp_path: Path
) -> None:
    """docs/cluster.md, the cluster's quick start: its `make cluster images kind-load deploy` is the
    one the cluster fixture ran (tests/kind/cluster_fixture.py); here the rest, in order: the tool
    check, the VM-driver refusal, a first `make upload run` that serves `churn`, a request through
    the gateway, the kubectl views, and a pod the namespace's Pod Security refuses.

    Then docs/canary-cluster.md from where it starts: a version 2 registered (made here, as a
    later run would), put in front of 10% with kubectl alone and taken up by the in-cluster
    controller, whose first decision, Events, Lease and log the page reads; then
    docs/control-plane.md on that rollout."""
    from tests.kind.cluster_fixture import setup_command

    assert setup_command() in PAGE_COMMANDS_RUN, "the cluster fixture did not run the page's setup"
    forget_model(kfp_cluster, "churn")
    start = time.monotonic()
    try:
        run_page(DOCS / "cluster.md", page_shell(tmp_path / "cluster", kfp_cluster))
        FACTS["cluster page (docs/cluster.md)"] = f"{time.monotonic() - start:.0f} s"
        assert kfp_cluster.register("churn", seed=2, scratch=tmp_path) == 2  # the canary page's
        start = time.monotonic()
        run_page(DOCS / "canary-cluster.md", page_shell(tmp_path / "canary", kfp_cluster))
        FACTS["canary page (docs/canary-cluster.md)"] = f"{time.monotonic() - start:.0f} s"
        # The control plane's page reads that rollout: its policy, last decision, every field.
        run_page(DOCS / "control-plane.md", page_shell(tmp_path / "control", kfp_cluster))
    finally:
        # The KFP tests after this one start `churn` from nothing, as before this test.
        forget_model(kfp_cluster, "churn")


def test_the_journey_page_runs_on_the_cluster_as_typed(
    kfp_cluster: KfpCluster, tmp_path: Path
) -> None:
    forget_model(kfp_cluster, MODEL)
    shell = page_shell(tmp_path / "checkout", kfp_cluster)
    start, since = time.monotonic(), datetime.now(UTC)
    try:
        run_page(PAGE, shell)
        # The page's two `make run`s, named after the model they train.
        import kfp

        runs = kfp.Client(host=kfp_cluster.host).list_runs(page_size=100).runs or []
        ours = [
            r
            for r in runs
            if (r.display_name or "").startswith(f"{MODEL}-training ") and r.created_at >= since
        ]
        assert [r.state for r in ours] == ["SUCCEEDED"] * 2, [
            (r.display_name, r.state) for r in runs
        ]
    finally:
        FACTS["journey page (docs/journey.md)"] = f"{time.monotonic() - start:.0f} s"
        kfp_cluster.kubectl(
            "delete", "isvc", MODEL, "-n", "mlops", "--ignore-not-found", check=False
        )
