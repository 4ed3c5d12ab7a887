"""`mlops monitor check|watch|schedule`: drift of a file, the retraining trigger, scheduled runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from mlops_core.drift import compare
from mlops_core.errors import MlopsError
from mlops_core.registry import ModelRegistry
from mlops_core.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where used, so that `mlops --help` stays fast
    from mlops_control.retraining.trigger import RetrainingTrigger, RunLauncher

app = typer.Typer(
    help="Drift against the champion, the drift-triggered retraining loop, scheduled training.",
    no_args_is_help=True,
)
console = Console()

RegistryOpt = typer.Option(None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]")
ModelOpt = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]")


def read_frame(path: str) -> pd.DataFrame:
    if path.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if path.endswith(".csv"):
        return pd.read_csv(path)
    raise MlopsError(f"{path}: expected a .csv or .parquet file")


def _named_in_rows(raw: pd.DataFrame, column: str, data: str) -> str | None:
    """The one model name or version a scored batch's rows carry (`mlops batch score` writes
    `model_name` and `model_version` on every row); None for plain input data."""
    if column not in raw:
        return None
    values = raw[column].dropna().astype(str).unique()
    if len(values) > 1:
        shown = ", ".join(sorted(values)[:5])
        flag = {"model_name": "--model", "model_version": "--version"}[column]
        raise MlopsError(
            f"{data}: the rows name {len(values)} values of {column} ({shown}); pass {flag}"
        )
    return str(values[0]) if len(values) else None


@app.command()
def check(
    data: str = typer.Argument(
        ..., help="a CSV or Parquet file of recent inputs, or a scored batch (with predictions)"
    ),
    version: str | None = typer.Option(
        None,
        help="the version whose reference to compare with [default: the one a scored batch's "
        "rows name, else champion]",
    ),
    registry: str | None = RegistryOpt,
    model: str | None = typer.Option(
        None,
        "--model",
        help="model name [default: the one a scored batch's rows name; env MLOPS_MODEL_NAME]",
    ),
) -> None:
    """Compare a data file with a version's training reference (the monitor's statistics)."""
    from serving.monitoring.endpoints import thresholds_from

    if not Path(data).exists():
        raise MlopsError(f"{data} does not exist")
    raw = read_frame(data)
    # A scored batch names its model and version on every row: those are what it is compared with.
    model = model or _named_in_rows(raw, "model_name", data)
    version = version or _named_in_rows(raw, "model_version", data) or "champion"
    s = load_settings(registry_uri=registry, model_name=model)
    reg = ModelRegistry(s.registry_uri)
    n = reg.resolve(s.model_name, version)
    schema = reg.schema(s.model_name, n)
    frame = schema.coerce_frame(raw)
    # A scored batch (`mlops batch score`) carries its predictions: compare those too.
    output = {"binary": "probability", "regression": "value"}.get(schema.task, "")
    predictions = raw[output].to_numpy(dtype=float) if output in raw else None
    report = compare(
        reg.reference(s.model_name, n),
        frame,
        thresholds=thresholds_from(s),
        predictions=predictions,
    )
    table = Table(title=f"{len(frame)} rows vs {s.model_name} v{n}'s training data")
    for col in ("feature", "PSI", "test", "effect", "p-value", "drifted"):
        table.add_column(col)
    for f in report.features:
        mark = "[red]yes[/red]" if f.drifted else "no"
        table.add_row(
            f.feature, f"{f.psi:.3f}", f.test, f"{f.effect:.3f}", f"{f.p_value:.2g}", mark
        )
    console.print(table)
    console.print(f"{len(report.drifted)}/{len(report.features)} features drifted")


def _trigger_from(s: Settings, launcher: RunLauncher, decisions_path: Path) -> RetrainingTrigger:
    from mlops_control.retraining.trigger import RetrainingTrigger, TriggerPolicy
    from mlops_core.jsonl_log import DecisionLog

    policy = TriggerPolicy(
        share_drifted=s.trigger_share_drifted,
        sustain_s=s.trigger_sustain_s,
        min_evaluations=s.trigger_min_evaluations,
        cooldown_s=s.trigger_cooldown_s,
    )
    return RetrainingTrigger(
        policy, launcher, model=s.model_name, decisions=DecisionLog(decisions_path)
    )


@app.command()
def watch(
    server: str = typer.Option(..., "--server", help="the stable model server's URL"),
    version: str = typer.Option(..., "--version", help="the champion version it serves"),
    data_source: str = typer.Option(
        ..., "--data-source", help="URI of the recent labelled data the retraining run trains on"
    ),
    kfp_host: str | None = typer.Option(
        None, "--kfp-host", help="submit to KFP here [env MLOPS_KFP_HOST]; else run locally"
    ),
    package: str | None = typer.Option(
        None, help="compiled pipeline for --kfp-host runs (default: the installed one)"
    ),
    interval: float = typer.Option(30.0, help="seconds between two drift readings"),
    max_evaluations: int = typer.Option(0, help="stop after this many readings (0: never)"),
    registry: str | None = RegistryOpt,
    model: str | None = ModelOpt,
) -> None:
    """Read the server's drift every INTERVAL s and start retraining when the policy says so."""
    import httpx

    from mlops_control.retraining.trigger import KfpRunLauncher, LocalRunLauncher
    from pipelines.local_run import TrainingParams
    from serving.monitoring.drift_monitor import DriftSnapshot

    s = load_settings(registry_uri=registry, model_name=model, kfp_host=kfp_host)
    launcher: object
    if s.kfp_host:
        launcher = KfpRunLauncher(
            host=s.kfp_host,
            package_path=package or _installed_pipeline(),
            arguments={"registry_uri": s.registry_uri, "data_source": data_source},
        )
    else:
        launcher = LocalRunLauncher(
            registry_uri=s.registry_uri,
            work_dir=s.work_dir,
            base_params=TrainingParams(data_source=data_source),
        )
    trigger = _trigger_from(s, launcher, Path(s.audit_dir) / "decisions.jsonl")
    done = 0
    while max_evaluations == 0 or done < max_evaluations:
        try:
            doc = httpx.get(f"{server}/v1/models/{s.model_name}/drift", timeout=30).json()
        except httpx.HTTPError as e:
            raise MlopsError(f"cannot read drift from {server}: {e}") from e
        snap = doc["latest"].get(version)
        if snap is None:
            console.print(f"v{version}: window not full yet ({doc['window_rows']})")
        else:
            decision = trigger.evaluate(DriftSnapshot(**snap))
            console.print(f"v{version}: {decision.action} {decision.reason}", highlight=False)
        done += 1
        if max_evaluations == 0 or done < max_evaluations:
            time.sleep(interval)


@app.command()
def schedule(
    cron: str = typer.Option(..., help="KFP cron (6 fields, seconds first), e.g. '0 0 3 * * *'"),
    data_source: str = typer.Option(..., "--data-source", help="URI the scheduled runs read"),
    kfp_host: str | None = typer.Option(None, "--kfp-host", help="[env MLOPS_KFP_HOST]"),
    package: str | None = typer.Option(None, help="compiled pipeline (default: the installed one)"),
    name: str = typer.Option("churn-scheduled-training", help="recurring run name"),
    registry: str | None = RegistryOpt,
    model: str | None = ModelOpt,
) -> None:
    """Create a KFP recurring run of the training pipeline (needs a reachable KFP API)."""
    import kfp

    from mlops_control.retraining.trigger import schedule_recurring_training

    s = load_settings(registry_uri=registry, model_name=model, kfp_host=kfp_host)
    if not s.kfp_host:
        raise MlopsError("no KFP API given: pass --kfp-host or set MLOPS_KFP_HOST")
    try:
        client = kfp.Client(host=s.kfp_host)
    except Exception as e:
        raise MlopsError(f"cannot reach KFP at {s.kfp_host}: {e}") from e
    job = schedule_recurring_training(
        client,
        package_path=package or _installed_pipeline(),
        arguments={
            "registry_uri": s.registry_uri,
            "model_name": s.model_name,
            "data_source": data_source,
        },
        cron=cron,
        name=name,
    )
    console.print(f"[green]recurring run {job} created ({cron})[/green]")


def _installed_pipeline() -> str:
    """The compiled training pipeline installed with the package (not one relative to the
    working directory)."""
    from pipelines.training import GOLDEN_YAML

    return str(GOLDEN_YAML)
