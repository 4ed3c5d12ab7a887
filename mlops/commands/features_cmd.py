"""`mlops features`: the churn feature store on this machine (components/feature_store.py).

`init` writes the generated churn tables and feature_store.yaml into the repository folder,
`apply` registers the definitions, `snapshot` appends a month of new activity (the data a nightly
job lands), `materialize` loads what is new into the online store (the pipeline step's own
function), `get` reads online values by customer id, and `serve` runs Feast's feature server
(`feast serve`) for the repository: the URL a model server's MLOPS_FEATURE_SERVER_URL names.
On a cluster, `submit` runs the materialization pipeline once on KFP and `schedule` makes it a
recurring run. Every check of the command line runs before any work.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from mlops_core.churn_feature_tables import recent_start
from mlops_core.errors import InvalidInputError, MlopsError
from mlops_core.settings import (
    DEFAULT_CLUSTER_FEATURE_REPO,
    DEFAULT_FEATURE_SERVER_PORT,
    DEFAULT_FEATURE_TABLE_ROWS,
    load_settings,
)

if TYPE_CHECKING:
    from components.feature_store import FeatureStoreConfig

app = typer.Typer(
    help="The feature store: tables, definitions, materialization, online values, its server.",
    no_args_is_help=True,
)
console = Console()

REPO_HELP = (
    "the feature repository: a folder, or an s3:// prefix in the object store (default: the "
    "feature_repo setting, MLOPS_FEATURE_REPO)"
)


class FeaturesUnavailableError(MlopsError):
    """Feast (the features extra) is not installed in this environment."""


def _config(repo: str | None) -> FeatureStoreConfig:
    if importlib.util.find_spec("feast") is None:
        raise FeaturesUnavailableError(
            "the feature store needs Feast: pip install 'mlops-platform[features]'"
        )
    from components.feature_store import FeatureStoreConfig

    settings = load_settings()
    return FeatureStoreConfig(
        repo_path=repo or settings.feature_repo, online_store=settings.feature_online_store
    )


def _applied(config: FeatureStoreConfig) -> None:
    from components.feature_store import FeatureRepoNotFoundError, uri_exists

    if not uri_exists(config.registry_path):
        raise FeatureRepoNotFoundError(
            f"no feature registry in {config.repo_path}: run `mlops features init` and "
            "`mlops features apply` first"
        )


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as e:
        raise InvalidInputError(f"{option} must be an ISO 8601 day or time, got {text!r}") from e
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _start(text: str) -> datetime:
    return _moment(text, "--start") if text else recent_start(datetime.now(UTC))


@app.command()
def init(
    repo: str | None = typer.Option(None, "--repo", help=REPO_HELP),
    rows: int = typer.Option(DEFAULT_FEATURE_TABLE_ROWS, "--rows", help="customers to generate"),
    seed: int = typer.Option(0, "--seed", help="generator seed"),
    start: str = typer.Option(
        "",
        "--start",
        help="the first activity snapshot's day, ISO 8601 (default: recent enough that each "
        "customer's latest snapshot is about 10 days old, fresh for `serve`)",
    ),
) -> None:
    """Write the generated churn tables (labels, profile, activity) and feature_store.yaml."""
    if rows < 1:
        raise InvalidInputError(f"--rows must be 1 or more, got {rows}")
    first_day = _start(start)
    config = _config(repo)
    if (
        not config.remote
        and Path(config.repo_path).exists()
        and not Path(config.repo_path).is_dir()
    ):
        raise InvalidInputError(f"{config.repo_path} exists and is not a folder")
    from components.feature_store import write_tables
    from mlops_core.churn_feature_tables import generate_churn_tables

    paths = write_tables(config, generate_churn_tables(rows, seed=seed, start=first_day))
    config.write_repo_yaml()
    console.print(f"wrote {rows} customers' tables to {config.offline_path}", soft_wrap=True)
    console.print(
        f"labels for training: {paths['labels']}; next: mlops features apply", soft_wrap=True
    )


@app.command()
def apply(repo: str | None = typer.Option(None, "--repo", help=REPO_HELP)) -> None:
    """Register the churn entity, feature views and feature service in the repository."""
    config = _config(repo)
    from components.feature_definitions import CHURN_VIEWS, FEATURE_SERVICE
    from components.feature_store import apply_definitions

    apply_definitions(config)
    views = ", ".join(v.name for v in CHURN_VIEWS)
    console.print(
        f"applied views {views} and service {FEATURE_SERVICE} in {config.repo_path}",
        soft_wrap=True,
    )


@app.command()
def snapshot(
    repo: str | None = typer.Option(None, "--repo", help=REPO_HELP),
    at: str = typer.Option("", "--at", help="ISO 8601 time of the new snapshot (default: now)"),
    seed: int = typer.Option(0, "--seed", help="generator seed"),
) -> None:
    """Append a month of new activity for every customer at --at: the data a nightly job lands.
    `materialize` then brings it to the online store."""
    moment = _moment(at, "--at") if at else datetime.now(UTC)
    config = _config(repo)
    from components.feature_store import add_activity_snapshot

    added = add_activity_snapshot(config, moment, seed=seed)
    console.print(
        f"added {added} customers' activity at {moment.isoformat()} to "
        f"{config.table_uri('customer_activity')}; next: mlops features materialize",
        soft_wrap=True,
    )


@app.command()
def materialize(
    repo: str | None = typer.Option(None, "--repo", help=REPO_HELP),
    end: str = typer.Option("", "--end", help="ISO 8601 time to materialize up to (default: now)"),
) -> None:
    """Load each view's rows since its last materialization (the first time: since its earliest
    event) up to --end into the online store."""
    config = _config(repo)
    from components.materialize_features import materialize_features, parse_end

    until = parse_end(end)
    _applied(config)
    with contextlib.redirect_stdout(io.StringIO()):  # Feast's progress lines
        summary = materialize_features(config, until)
    for v in summary["views"]:
        counted = "" if v["rows"] is None else f", {v['rows']} rows, {v['customers']} customers"
        what = f"{v['start']} .. {v['end']}{counted}" if v["materialized"] else "up to date"
        console.print(f"{v['view']}: {what}", soft_wrap=True)


def _customer_ids(values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError as e:
        raise InvalidInputError(f"customer ids are whole numbers, got {values}") from e


@app.command()
def get(
    customer_ids: list[str] = typer.Argument(..., help="customer ids (entity keys)"),
    repo: str | None = typer.Option(None, "--repo", help=REPO_HELP),
) -> None:
    """Print the online store's values for CUSTOMER_IDS (a row each; empty: none stored)."""
    ids = _customer_ids(customer_ids)
    config = _config(repo)
    _applied(config)
    from components.feature_store import online_features

    frame = online_features(config, ids)
    # A column per customer, a row per feature: readable at any terminal width.
    table = Table("feature", *[str(i) for i in ids])
    for column in frame.columns[1:]:
        values = ["" if v is None or v != v else str(v) for v in frame[column]]
        table.add_row(str(column), *values)
    console.print(table)
    empty = frame.iloc[:, 1:].isna().all(axis=1)
    missing = [i for i, none in zip(ids, empty, strict=True) if none]
    if missing:
        console.print(f"no online values for {missing}: not materialized yet?", soft_wrap=True)


def _port_free(host: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise InvalidInputError(
                f"cannot serve on {host}:{port}: {e.strerror or e}; choose another --port"
            ) from e


@app.command()
def serve(
    repo: str | None = typer.Option(None, "--repo", help=REPO_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind"),
    port: int = typer.Option(DEFAULT_FEATURE_SERVER_PORT, "--port", help="port to listen on"),
) -> None:
    """Run Feast's feature server for the repository (`feast serve`) until stopped."""
    if not 0 < port < 65536:
        raise InvalidInputError(f"--port must be 1..65535, got {port}")
    config = _config(repo)
    _applied(config)
    _port_free(host, port)
    feast = Path(sys.executable).with_name("feast")
    if not feast.exists():
        raise FeaturesUnavailableError(f"no feast command next to {sys.executable}")
    shown = "127.0.0.1" if host == "0.0.0.0" else host
    console.print(f"feature server: set MLOPS_FEATURE_SERVER_URL=http://{shown}:{port}")
    sys.stdout.flush()
    config.require_online_store()
    # Feast reads feature_store.yaml in the folder it runs in: the repository's own, or for one
    # in the object store a local folder standing for it.
    repo_dir = str(config.write_repo_yaml().parent)
    argv = [str(feast), "--chdir", repo_dir, "serve", "-h", host, "-p", str(port)]
    # No worker recycling: by default `feast serve` restarts its gunicorn worker every ~1,000
    # requests, and the lookups in flight then fail; 0 turns it off (gunicorn/workers/base.py).
    argv += ["--no-access-log", "--max-requests", "0"]
    os.execv(str(feast), argv)  # Feast's server replaces this process


KFP_HOST_HELP = "KFP API (port-forwarded ml-pipeline)"
IMAGE_HELP = (
    "component image to compile the pipeline for (make materialize: COMPONENT_IMAGE; default: "
    "the committed pipelines/feature_materialization.yaml, the release image)"
)


def _package(image: str) -> str:
    """The materialization pipeline's cluster form, for `image` (empty: the committed YAML)."""
    from pipelines.feature_materialization import GOLDEN_YAML, compile_materialization

    if not image:
        return str(GOLDEN_YAML)
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="mlops-materialize-")) / "feature_materialization.yaml"
    return str(compile_materialization(out, image))


def _cluster_repo(repo: str) -> str:
    if "://" not in repo:
        raise InvalidInputError(
            f"--repo {repo!r} is a path on this machine, which the cluster cannot read; a "
            f"cluster run materializes a repository in the object store (s3://...)"
        )
    return repo


@app.command()
def submit(
    image: str = typer.Option("", "--image", help=IMAGE_HELP),
    host: str = typer.Option("http://localhost:8887", "--host", help=KFP_HOST_HELP),
    ui: str = typer.Option("http://localhost:8888", "--ui", help="KFP UI, for the printed URL"),
    repo: str = typer.Option(DEFAULT_CLUSTER_FEATURE_REPO, "--repo", help="repository (s3://)"),
    end: str = typer.Option("", "--end", help="ISO 8601 time to materialize up to (default: now)"),
    wait: bool = typer.Option(
        False, "--wait", help="wait for the run; a failed run exits non-zero"
    ),
    wait_timeout: float = typer.Option(1800, "--wait-timeout", help="seconds --wait waits", min=1),
) -> None:
    """Run the materialization pipeline once on KFP, into the cluster's online store (Redis)."""
    from components.materialize_features import parse_end

    parse_end(end)  # a bad time is one line here, not a failed run
    arguments = {"feature_repo": _cluster_repo(repo), "end": end}
    from pipelines.feature_materialization import PIPELINE_NAME
    from pipelines.submit import create_run, wait_for_run

    run = create_run(
        Path(_package(image)),
        host=host,
        ui_url=ui,
        arguments=arguments,
        run_name=f"{PIPELINE_NAME} {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}",
        experiment=PIPELINE_NAME,
    )
    console.print(f"submitted run {run.run_id}: {run.url}", soft_wrap=True)
    if wait:
        done = wait_for_run(run, host=host, timeout_s=wait_timeout)
        console.print(f"run {done.run_id} {done.state.lower()} after {done.seconds:.0f} s")


@app.command()
def schedule(
    cron: str = typer.Option(
        ..., "--cron", help="KFP cron (6 fields, seconds first), e.g. '0 0 * * * *'"
    ),
    image: str = typer.Option("", "--image", help=IMAGE_HELP),
    host: str = typer.Option("http://localhost:8887", "--host", help=KFP_HOST_HELP),
    repo: str = typer.Option(DEFAULT_CLUSTER_FEATURE_REPO, "--repo", help="repository (s3://)"),
    name: str = typer.Option("churn-feature-materialization", "--name", help="recurring run name"),
) -> None:
    """Make the materialization pipeline a KFP recurring run: each run loads what arrived since
    the one before."""
    import kfp

    from mlops_control.retraining.trigger import check_cron, schedule_recurring_training

    check_cron(cron)
    arguments = {"feature_repo": _cluster_repo(repo), "end": ""}
    package = _package(image)
    try:
        client = kfp.Client(host=host)
    except Exception as e:
        raise MlopsError(f"cannot reach KFP at {host}: {e}") from e
    job = schedule_recurring_training(
        client,
        package_path=package,
        arguments=arguments,
        cron=cron,
        name=name,
        experiment="feature-materialization",
    )
    console.print(f"recurring run {job} created ({cron})")
