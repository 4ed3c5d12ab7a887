"""The journey a user types, on the kind cluster with KFP: docs/journey.md's commands, block by
block, as the page shows them (tests/docs/console_blocks.py), in a scratch checkout with this
checkout's .venv. Their own CSV put in the cluster's store, `make upload`, `make run` on it until
the deploy step serves it, a second run's canary taken to promotion by `make canary` on traffic
sent through the gateway, the champion moved back with `mlops registry rollback`, and a third run
with the same arguments deploying again. No step the page does not show.

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
from tests.kfp.test_kfp_api import STORE, object_store

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

PAGE = DOCS / "journey.md"
MODEL = "customers"  # the page's model


def page_shell(root: Path, cluster: KfpCluster) -> PageShell:
    return PageShell(
        cwd=scratch_checkout(root, more=("hack", "pipelines")),
        env=page_environment(REPO / ".venv" / "bin", {"IMAGE_TAG": cluster.env["IMAGE_TAG"]}),
    )


def test_the_kfp_page_runs_on_the_cluster_as_typed(kfp_cluster: KfpCluster, tmp_path: Path) -> None:
    """docs/kfp.md: the UI's port-forward and `make upload`."""
    run_page(DOCS / "kfp.md", page_shell(tmp_path / "checkout", kfp_cluster))


def test_the_journey_page_runs_on_the_cluster_as_typed(
    kfp_cluster: KfpCluster, tmp_path: Path
) -> None:
    # The page starts from a model the registry has never seen (a kept cluster may hold one).
    with object_store(kfp_cluster) as fs:
        if fs.exists(f"{STORE.registry_uri}/{MODEL}"):
            fs.rm(f"{STORE.registry_uri}/{MODEL}", recursive=True)
    kfp_cluster.kubectl("delete", "isvc", MODEL, "-n", "mlops", "--ignore-not-found", check=False)
    shell = page_shell(tmp_path / "checkout", kfp_cluster)
    start, since = time.monotonic(), datetime.now(UTC)
    try:
        run_page(PAGE, shell)
        # The page's three `make run`s, named after the model they train.
        import kfp

        runs = kfp.Client(host=kfp_cluster.host).list_runs(page_size=100).runs or []
        ours = [
            r
            for r in runs
            if (r.display_name or "").startswith(f"{MODEL}-training ") and r.created_at >= since
        ]
        assert [r.state for r in ours] == ["SUCCEEDED"] * 3, [
            (r.display_name, r.state) for r in runs
        ]
    finally:
        FACTS["journey page (docs/journey.md)"] = f"{time.monotonic() - start:.0f} s"
        kfp_cluster.kubectl(
            "delete", "isvc", MODEL, "-n", "mlops", "--ignore-not-found", check=False
        )
