"""`mlops registry list|show|promote|rollback`."""

from __future__ import annotations

import json
import os

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mlops_core.registry import ModelRegistry, ModelVersion, UnreadableVersion
from mlops_core.settings import load_settings
from mlops_core.target import DEFAULT_PRIMARY_METRIC

app = typer.Typer(
    help="Inspect the model registry and move the champion pointer.", no_args_is_help=True
)
console = Console()

RegistryOpt = typer.Option(None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]")
ModelOpt = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]")


def _open(registry: str | None, model: str | None) -> tuple[ModelRegistry, str]:
    """The registry every subcommand reads; none of them creates one, so a missing path is named."""
    s = load_settings(registry_uri=registry, model_name=model)
    reg = ModelRegistry(s.registry_uri)
    reg.require_exists()
    return reg, s.model_name


def _metric(v: ModelVersion) -> str:
    """The version's own primary metric: a regression model has no ROC AUC."""
    task = str(v.params.get("task", "binary"))
    name = str(v.params.get("primary_metric") or DEFAULT_PRIMARY_METRIC.get(task, "roc_auc"))
    value = v.metrics.get(name)
    return f"{name} {value:.4f}" if value is not None else f"{name} -"


def _table(reg: ModelRegistry, name: str) -> tuple[Table, list[UnreadableVersion]]:
    champion = reg.champion(name)
    table = Table(title=f"{name} @ {reg.uri}")
    for col in ("version", "champion", "created", "task", "estimator", "metric", "run", "data"):
        table.add_column(col)
    unreadable: list[UnreadableVersion] = []
    for v in reg.version_listing(name):
        if isinstance(v, UnreadableVersion):
            table.add_row(str(v.version), "", "[red]unreadable[/red]", "", "", "", "", "")
            unreadable.append(v)
            continue
        table.add_row(
            str(v.version),
            "*" if v.version == champion else "",
            v.created_at,
            str(v.params.get("task", "")),
            v.estimator,
            _metric(v),
            v.run_id,
            v.data_fingerprint[:12],
        )
    return table, unreadable


@app.command("list")
def list_versions(registry: str | None = RegistryOpt, model: str | None = ModelOpt) -> None:
    """List the versions of every model (or of --model), each with its task's primary metric."""
    reg, name = _open(registry, model)
    chosen = model is not None or "MLOPS_MODEL_NAME" in os.environ
    names = [name] if chosen else reg.models()
    if not names:
        console.print(f"no models in {reg.uri} yet")
    for each in names:
        table, unreadable = _table(reg, each)
        console.print(table)
        for v in unreadable:
            console.print(
                f"[red]v{v.version} unreadable:[/red] {escape(v.problem)}", soft_wrap=True
            )


@app.command()
def show(
    version: str = typer.Argument("champion", help="a version number, 'champion' or 'latest'"),
    registry: str | None = RegistryOpt,
    model: str | None = ModelOpt,
) -> None:
    """Print one version's full record (lineage, metrics, parameters) as JSON."""
    reg, name = _open(registry, model)
    mv = reg.get(name, version)
    doc = mv.to_dict() | {
        "is_champion": reg.champion(name) == mv.version,
        "uri": reg.version_uri(name, mv.version),
    }
    console.print_json(json.dumps(doc))


@app.command()
def promote(
    version: int = typer.Argument(..., help="the version to make champion"),
    reason: str = typer.Option("manual promotion", help="recorded in the champion history"),
    registry: str | None = RegistryOpt,
    model: str | None = ModelOpt,
) -> None:
    """Make a version the champion."""
    reg, name = _open(registry, model)
    reg.set_champion(name, version, reason=reason, actor="cli")
    console.print(f"[green]{name} v{version} is now champion[/green]")


@app.command()
def rollback(
    to: int | None = typer.Option(
        None, "--to", help="version to restore (default: the previous champion)"
    ),
    reason: str = typer.Option("manual rollback", help="recorded in the champion history"),
    registry: str | None = RegistryOpt,
    model: str | None = ModelOpt,
) -> None:
    """Restore an earlier champion in one command."""
    reg, name = _open(registry, model)
    restored = reg.rollback(name, to, reason=reason)
    console.print(f"[yellow]{name} rolled back: v{restored} is champion[/yellow]")
