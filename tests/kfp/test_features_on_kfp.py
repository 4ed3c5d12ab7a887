"""docs/features-cluster.md on the kind cluster with KFP, block by block as the page shows them
(tests/docs/console_blocks.py): a pipeline run trains `churn-features` from the cluster's feature
store and deploys it; a request carrying only a customer id is answered through the gateway; new
activity landed in the object store and materialized by the materialization pipeline changes the
answer; a recurring materialization run is created.

Then what the page cannot show: the registered version's lineage names the feature views, the
answer's values are the new snapshot's (read back from the object store), the recurring run is in
KFP. The page's model, its registry entries and its recurring run are removed at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP
from mlops_core.settings import DEFAULT_CLUSTER_FEATURE_REPO
from tests.docs.console_blocks import DOCS, run_page
from tests.kfp.kfp_cluster import FACTS, KfpCluster
from tests.kfp.test_journey import forget_model, page_shell
from tests.kfp.test_kfp_api import STORE, object_store
from tests.kind.cluster_harness import GATEWAY_PORT

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

PAGE = DOCS / "features-cluster.md"
MODEL = "churn-features"  # the page's model
CUSTOMER = 100_000  # the page's customer
SCHEDULE = "churn-feature-materialization"  # `mlops features schedule`'s default name


def answer(customer: int) -> httpx.Response:
    """The page's request by id, through the gateway's node port."""
    return httpx.post(
        f"http://127.0.0.1:{GATEWAY_PORT}/v1/models/{MODEL}:predict",
        headers={"Host": f"{MODEL}-mlops.example.com"},
        json={"instances": [{ENTITY_KEY: customer}]},
        timeout=30,
    )


def _recurring_runs(cluster: KfpCluster) -> list[Any]:
    import kfp

    runs = kfp.Client(host=cluster.host).list_recurring_runs(page_size=100).recurring_runs
    return [r for r in runs or [] if r.display_name == SCHEDULE]


def test_the_feature_store_page_runs_on_the_cluster_as_typed(
    kfp_cluster: KfpCluster, tmp_path: Path
) -> None:
    import kfp

    forget_model(kfp_cluster, MODEL)
    bucket_path = DEFAULT_CLUSTER_FEATURE_REPO.removeprefix("s3://")
    start = time.monotonic()
    try:
        run_page(PAGE, page_shell(tmp_path / "checkout", kfp_cluster))
        # Trained from the store: the version's lineage names its views and training set.
        with object_store(kfp_cluster) as fs:
            version = json.loads(
                fs.cat_file(
                    f"{STORE.registry_uri.removeprefix('s3://')}/{MODEL}/versions/1/version.json"
                )
            )
            activity = pd.read_parquet(
                fs.open(f"{bucket_path}/data/customer_activity.parquet", "rb")
            )
        lineage = version["feature_lineage"]
        assert lineage["feature_service"] == "churn", lineage
        assert set(lineage["views"]) == {"customer_profile", "customer_activity"}, lineage
        assert lineage["rows"] > 0 and lineage["fingerprint"], lineage
        # The answer is the new snapshot's: the newest row of the customer's activity.
        mine = activity[activity[ENTITY_KEY] == CUSTOMER].sort_values(EVENT_TIMESTAMP)
        newest, before = mine.iloc[-1], mine.iloc[-2]
        r = answer(CUSTOMER)
        assert r.status_code == 200, r.text
        (used,) = r.json()["features_used"]
        assert used[ENTITY_KEY] == CUSTOMER
        for feature in ("tenure_months", "total_charges", "logins_30d"):
            assert used[feature] == pytest.approx(float(newest[feature])), feature
        assert used["tenure_months"] == before["tenure_months"] + 1  # not the old value
        # `mlops features schedule`: the recurring run is in KFP, every hour.
        (job,) = _recurring_runs(kfp_cluster)
        assert job.trigger.cron_schedule.cron == "0 0 * * * *"
    finally:
        FACTS["features page (docs/features-cluster.md)"] = f"{time.monotonic() - start:.0f} s"
        client = kfp.Client(host=kfp_cluster.host)
        for job in _recurring_runs(kfp_cluster):  # it would fire beside later tests
            client.delete_recurring_run(job.recurring_run_id)
        forget_model(kfp_cluster, MODEL)  # its model server's CPU request is kind's to give back
