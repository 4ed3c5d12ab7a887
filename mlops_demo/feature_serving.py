"""`mlops demo --features`: the loop's first steps with the feature store in the middle.

Three stages: build a feature repository (the churn tables dated so that today's online values
are fresh, applied and materialized by the pipeline step's function), train v1 from it (the
training pipeline's `feature_store` parameter: a point-in-time-correct training set), and serve
it by key: a real Feast feature server (`mlops features serve`) and a real model server whose
MLOPS_FEATURE_SERVER_URL names it, sent requests that carry only a customer id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from components.feature_store import FeatureStoreConfig, apply_definitions, write_tables
from components.materialize_features import materialize_features
from mlops_control.traffic.model_server_process import (
    ModelServerProcess,
    free_port,
    mlops_executable,
    wait_for_http_ready,
)
from mlops_core.churn_feature_tables import (
    ENTITY_KEY,
    FIRST_CUSTOMER_ID,
    generate_churn_tables,
    recent_start,
)
from mlops_core.errors import MlopsError
from mlops_demo.context import DemoContext
from mlops_demo.stages import Stage, record_training_run

REQUESTS = 20  # key-only predict requests the serving stage sends
ROWS_PER_REQUEST = 10
UNKNOWN_CUSTOMER = FIRST_CUSTOMER_ID - 1  # no customer has this id


class FeatureDemoError(MlopsError):
    """A request by key was not answered as the feature store's values say it should be."""


def _config(ctx: DemoContext) -> FeatureStoreConfig:
    return FeatureStoreConfig(repo_path=str(ctx.work_dir / "features"))


def build_feature_store(ctx: DemoContext) -> None:
    """Write the churn tables to a feature repository, apply the definitions, materialize."""
    start = time.perf_counter()
    config = _config(ctx)
    tables = generate_churn_tables(ctx.rows, seed=0, start=recent_start(datetime.now(UTC)))
    write_tables(config, tables)
    apply_definitions(config)
    with contextlib.redirect_stdout(io.StringIO()):  # Feast's progress lines
        summary = materialize_features(config)
    ctx.results["features"] = {
        "stage": "build the feature store",
        "outcome": "materialized",
        "why": [
            f"{v['view']}: {v['rows']} rows, {v['customers']} customers up to {v['end']}"
            for v in summary["views"]
        ]
        + [f"repository: {config.repo_path}"],
        "seconds": time.perf_counter() - start,
    }


def train_from_the_store(ctx: DemoContext) -> None:
    """v1 on the feature store's point-in-time-correct training set for the label table."""
    config = _config(ctx)
    labels = config.table_uri("labels")
    result = ctx.train(feature_store=config.repo_path, data_source=labels, seed=0)
    record_training_run(ctx, "features_v1", "train v1 from the feature store", result)
    # Served next whether or not the gate promoted it (a small demo may not pass its tests).
    ctx.results["features_v1"]["served_version"] = str(result["version"])


@contextlib.contextmanager
def feature_server(config: FeatureStoreConfig, log_dir: Path) -> Iterator[str]:
    """`mlops features serve` for the repository, stopped on exit; yields its URL."""
    port = free_port()
    log = log_dir / "feature-server.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [*mlops_executable(), "features", "serve", "--repo", config.repo_path]
    with log.open("wb") as out:
        process = subprocess.Popen([*cmd, "--port", str(port)], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http_ready(f"{url}/health", process, log, what="the feature server")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _send_by_key(predict_url: str, ids: list[int]) -> list[dict[str, Any]]:
    """Key-only requests, ROWS_PER_REQUEST customers each; every one must be answered."""
    answers: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(ids), ROWS_PER_REQUEST):
            chunk = ids[i : i + ROWS_PER_REQUEST]
            r = client.post(predict_url, json={"instances": [{ENTITY_KEY: c} for c in chunk]})
            if r.status_code != 200:
                raise FeatureDemoError(f"a request by key got {r.status_code}: {r.text[:300]}")
            answers.append(r.json())
    return answers


def serve_by_customer_id(ctx: DemoContext) -> None:
    """Serve v1 with a feature server behind it; send requests carrying only customer ids."""
    start = time.perf_counter()
    model = ctx.settings.model_name
    version = ctx.results["features_v1"]["served_version"]
    log_dir = ctx.work_dir / "servers"
    customers = min(ctx.rows, REQUESTS * ROWS_PER_REQUEST)
    ids = list(range(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + customers))
    with feature_server(_config(ctx), log_dir) as url:
        server = ModelServerProcess.spawn(
            model, version, ctx.settings.registry_uri, log_dir, {"MLOPS_FEATURE_SERVER_URL": url}
        )
        try:
            asyncio.run(server.wait_ready())
            predict = f"{server.url}/v1/models/{model}:predict"
            answers = _send_by_key(predict, ids)
            unknown = httpx.post(
                predict, json={"instances": [{ENTITY_KEY: UNKNOWN_CUSTOMER}]}, timeout=30
            )
        finally:
            server.stop()
    first = answers[0]
    used = first["features_used"][0]
    if unknown.status_code != 404:
        raise FeatureDemoError(f"an unknown customer got {unknown.status_code}, not 404")
    ctx.results["by_key"] = {
        "stage": "serve v1 by customer id",
        "outcome": f"answered {len(ids)} customers by key",
        "version": f"{model} v{version}",
        "why": [
            f"feature server {url}: MLOPS_FEATURE_SERVER_URL of the model server",
            f"customer {used[ENTITY_KEY]}: prediction {first['predictions'][0]} from "
            f"contract={used['contract']}, tenure_months={used['tenure_months']}",
            f"unknown customer {UNKNOWN_CUSTOMER}: {unknown.status_code} "
            f"{unknown.json().get('error', '')}",
        ],
        "seconds": time.perf_counter() - start,
    }


FEATURE_STAGES: list[Stage] = [build_feature_store, train_from_the_store, serve_by_customer_id]
