"""compute=dask on the cluster, through the golden pipelines run unedited on the `make deploy`
cluster and docs/scale.md's `make run`: the train step gets a DaskCluster from the dask-kubernetes
operator (which `make deploy` runs), trains on it, registers and deploys; a cancelled run leaves
no Dask cluster behind; a batch scoring run scores a partitioned Parquet data set on Dask.

The three runs start together: a run spends most of its minutes waiting on pods, so they overlap
well on 2 cores. The one to cancel (a batch run) is terminated once its DaskCluster exists.
"""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from components.dask_kubecluster import GROUP, PLURAL
from tests.kfp.kfp_cluster import FACTS, KfpCluster
from tests.kfp.kfp_stack import ROOT, script_env
from tests.kfp.test_kfp_api import (
    RUN_TIMEOUT,
    STORE,
    object_store,
    read_artifact,
    remove_tree,
    run_outputs,
    states,
    tasks_by_name,
    wait_for_run,
)

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

MODEL = "churn-dask"
BATCH_MODEL = "churn-dask-batch"
BATCH_PACKAGE = ROOT / "pipelines" / "batch_scoring.yaml"
# The run to cancel and the batch run: one small worker each. The node has 2 CPUs, about 1.65 of
# them requested by Kubernetes and the platform; a worker's CPU is a request, not a limit.
SMALL = {
    "compute": "dask",
    "dask_workers": 1,
    "dask_worker_memory": "1GiB",
    "dask_worker_cpu": 0.1,
}
CLUSTER_LABEL = "dask.org/cluster-name"  # the operator's label on its pods (controller.py)


@dataclass
class DaskWatch:
    """What DaskClusters and Dask pods existed in kubeflow, polled every 2 s: which run's step
    owned each cluster, and how many of its worker pods were Running at most."""

    cluster: KfpCluster
    owners: dict[str, str] = field(default_factory=dict)  # DaskCluster -> owning pod
    running_workers: dict[str, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> tuple[set[str], dict[str, str]]:
        """The DaskClusters there now, and every Dask pod there now with its cluster."""
        got = self.cluster.kubectl(
            "get", f"{PLURAL}.{GROUP}", "-n", "kubeflow", "-o", "json", check=False
        )
        clusters = json.loads(got.stdout)["items"] if got.returncode == 0 else []
        for c in clusters:
            for ref in c["metadata"].get("ownerReferences", []):
                self.owners[c["metadata"]["name"]] = ref["name"]
        pods = json.loads(
            self.cluster.kubectl(
                "get", "pods", "-n", "kubeflow", "-l", CLUSTER_LABEL, "-o", "json"
            ).stdout
        )["items"]
        for pod in pods:
            labels = pod["metadata"]["labels"]
            name = labels[CLUSTER_LABEL]
            if (
                labels.get("dask.org/component") == "worker"
                and pod["status"].get("phase") == "Running"
            ):
                running = sum(
                    1
                    for p in pods
                    if p["metadata"]["labels"][CLUSTER_LABEL] == name
                    and p["metadata"]["labels"].get("dask.org/component") == "worker"
                    and p["status"].get("phase") == "Running"
                )
                self.running_workers[name] = max(self.running_workers.get(name, 0), running)
        return (
            {c["metadata"]["name"] for c in clusters},
            {p["metadata"]["name"]: p["metadata"]["labels"][CLUSTER_LABEL] for p in pods},
        )

    def poll(self) -> None:
        while not self.stop.wait(2):
            self.now()

    def of_run(self, run_id: str) -> list[str]:
        """The clusters whose owner pod belonged to the run (KFP labels its pods with the run)."""
        mine = []
        for name, pod in list(self.owners.items()):
            got = self.cluster.kubectl(
                "get",
                "pod",
                pod,
                "-n",
                "kubeflow",
                "-o",
                "jsonpath={.metadata.labels}",
                check=False,
            )
            if got.returncode == 0 and run_id in got.stdout:
                mine.append(name)
        return mine

    def wait_gone(self, names: list[str], timeout_s: float) -> float:
        """Seconds until none of the clusters, nor any of their pods, is left."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            clusters, pods = self.now()
            left = [n for n in names if n in clusters] + [p for p, c in pods.items() if c in names]
            if not left:
                return time.monotonic() - start
            time.sleep(2)
        raise AssertionError(f"still there {timeout_s:.0f} s later: {left}")


@pytest.fixture(scope="module")
def watch(kfp_cluster: KfpCluster) -> Iterator[DaskWatch]:
    found = kfp_cluster.kubectl(
        "get", "deploy", "mlops-dask-operator", "-n", "kubeflow", "-o", "json", check=False
    )
    assert found.returncode == 0, "make deploy did not install the Dask operator: " + found.stderr
    w = DaskWatch(kfp_cluster)
    thread = threading.Thread(target=w.poll, daemon=True)
    thread.start()
    yield w
    w.stop.set()
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def client(kfp_cluster: KfpCluster) -> Any:
    import kfp

    return kfp.Client(host=kfp_cluster.host)


def page_command() -> str:
    """docs/scale.md's training run on Dask, as the page gives it."""
    from tests.docs.console_blocks import DOCS, page_commands

    (line,) = [
        c.line
        for c in page_commands(DOCS / "scale.md")
        if c.line.startswith("make run") and "--compute dask" in c.line
    ]
    return line


@dataclass
class PageRun:
    process: subprocess.Popen[str]
    log: Path

    def run_id(self, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(r"submitted run (\S+):", self.log.read_text())
            if found:
                return found.group(1)
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(2)
        raise AssertionError(f"no run submitted in {timeout_s:.0f} s: {self.log.read_text()}")


@dataclass(frozen=True)
class Runs:
    page: PageRun  # docs/scale.md's training run
    cancel: str  # a batch run terminated once its DaskCluster exists
    batch: str  # a batch scoring run over a partitioned data set
    batch_rows: int


@pytest.fixture(scope="module")
def runs(
    client: Any, kfp_cluster: KfpCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    """The three runs start together (each spends most of its minutes waiting on pods): the
    page's training run, and two batch runs of the golden batch YAML (unedited) scoring with a
    version registered here first: one to finish, one to cancel (its first step makes the
    DaskCluster, so it is there within a minute)."""
    line = page_command()
    args = shlex.split(line)
    assert args[:2] == ["make", "run"], line
    tmp = tmp_path_factory.mktemp("dask-runs")
    log = tmp / "make-run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*args, f"KFP_HOST={kfp_cluster.host}"],
            cwd=ROOT,
            env=script_env(**kfp_cluster.env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        rows = 3000
        prefix = f"{STORE.bucket}/data/dask-batch"
        kfp_cluster.register(BATCH_MODEL, seed=5, scratch=tmp)
        with object_store(kfp_cluster) as fs:
            remove_tree(fs, prefix)
            for name, data in _partitioned(rows):
                fs.pipe_file(f"{prefix}/{name}", data)
        batch, cancel = (
            client.create_run_from_pipeline_package(
                str(BATCH_PACKAGE),
                arguments={
                    "registry_uri": STORE.registry_uri,
                    "input_uri": f"s3://{prefix}",
                    "model_name": BATCH_MODEL,
                    "version": "latest",
                }
                | SMALL,
                run_name=f"{MODEL}-batch-{label}",
                experiment_name="dask",
            ).run_id
            for label in ("scored", "cancelled")
        )
        yield Runs(PageRun(process, log), cancel, batch, rows)
    finally:
        if process.poll() is None:
            process.kill()
        kfp_cluster.kubectl(
            "delete", "isvc", MODEL, "-n", "mlops", "--ignore-not-found", check=False
        )


def test_a_cancelled_dask_run_leaves_no_dask_cluster(
    runs: Runs, watch: DaskWatch, client: Any
) -> None:
    cancel = runs.cancel
    deadline, mine = time.monotonic() + 900, []
    while time.monotonic() < deadline:
        mine = watch.of_run(cancel)
        if mine:
            break
        state = client.get_run(cancel).state
        assert state not in {"SUCCEEDED", "FAILED", "CANCELED"}, f"the run ended first: {state}"
        time.sleep(3)
    assert mine, "the run's batch-score step started no Dask cluster in 15 min"
    time.sleep(10)  # its scheduler and worker pods are made: their deletion is checked too
    client.terminate_run(cancel)
    took = watch.wait_gone(mine, timeout_s=180)
    FACTS["dask: cluster gone after the run was cancelled"] = f"{took:.0f} s"


def test_the_pages_dask_run_trains_on_the_operators_cluster_registers_and_deploys(
    runs: Runs, watch: DaskWatch, client: Any, kfp_cluster: KfpCluster
) -> None:
    page = runs.page
    train = page.run_id()
    assert page.process.wait(timeout=RUN_TIMEOUT) == 0, page.log.read_text()
    assert f"run {train} succeeded" in page.log.read_text(), page.log.read_text()
    done = wait_for_run(client, train, "compute=dask (docs/scale.md)")
    clusters = watch.of_run(train)
    assert len(clusters) == 1, f"the train step's Dask clusters: {clusters} (all: {watch.owners})"
    workers = int(shlex.split(page_command())[-1].split("--dask-workers ")[1].split()[0])
    assert watch.running_workers.get(clusters[0]) == workers, watch.running_workers
    # the step deletes its cluster when it ends (and the pod's going would, too)
    watch.wait_gone(clusters, timeout_s=120)
    (_, uri) = run_outputs(kfp_cluster, train)["train"]["summary"]
    summary = json.loads(read_artifact(kfp_cluster, uri))
    assert summary["compute"]["compute"] == "dask", summary
    assert summary["compute"]["workers"] == workers, summary
    assert tasks_by_name(done)["deploy"].state == "SUCCEEDED", states(done)
    kfp_cluster.kubectl(
        "wait", "--for=condition=Ready", f"isvc/{MODEL}", "-n", "mlops", "--timeout=600s"
    )


def _partitioned(rows: int) -> list[tuple[str, bytes]]:
    """The churn generator's rows as three Parquet files, two planted bad rows among them."""
    from mlops_core.churn_data import CHURN_SCHEMA, generate_churn

    df = generate_churn(rows, seed=7).reset_index(drop=True)
    df.insert(0, "customer_id", [f"c{i:05d}" for i in range(rows)])
    num = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
    df[num] = df[num].astype(float)
    df.loc[5, num] = math.inf  # not finite
    df.loc[rows - 10, CHURN_SCHEMA.categorical_features[0].name] = "martian"  # unknown
    parts = []
    for i, (lo, hi) in enumerate(
        [(0, rows // 3), (rows // 3, 2 * rows // 3), (2 * rows // 3, rows)]
    ):
        buf = io.BytesIO()
        df.iloc[lo:hi].to_parquet(buf, row_group_size=500)
        parts.append((f"part-{i}.parquet", buf.getvalue()))
    return parts


def test_a_batch_run_scores_a_partitioned_data_set_on_dask(
    runs: Runs, watch: DaskWatch, client: Any, kfp_cluster: KfpCluster
) -> None:
    import pandas as pd

    done = wait_for_run(client, runs.batch, "batch scoring, compute=dask")
    assert done.state == "SUCCEEDED", states(done)
    assert len(watch.of_run(runs.batch)) == 1, watch.owners
    outputs = run_outputs(kfp_cluster, runs.batch)["batch-score"]
    with object_store(kfp_cluster) as fs:
        scores = pd.read_parquet(io.BytesIO(fs.cat_file(outputs["scores"][1].split("://", 1)[1])))
        aside = pd.read_parquet(io.BytesIO(fs.cat_file(outputs["rejected"][1].split("://", 1)[1])))
    rows = runs.batch_rows
    assert aside["row"].tolist() == [5, rows - 10], aside
    kept = [f"c{i:05d}" for i in range(rows) if i not in (5, rows - 10)]
    assert scores["customer_id"].tolist() == kept  # every good row, in the input's order
