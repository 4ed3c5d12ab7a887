"""`mlops registry list|show|promote|rollback`."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from mlops_core.registry import ModelRegistry
from mlops_core.settings import load_settings

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


@app.command("list")
def list_versions(registry: str | None = RegistryOpt, model: str | None = ModelOpt) -> None:
    """List a model's versions with their primary metrics and the champion."""
    reg, name = _open(registry, model)
    champion = reg.champion(name)
    table = Table(title=f"{name} @ {reg.uri}")
    for col in ("version", "champion", "created", "estimator", "roc_auc", "run", "data"):
        table.add_column(col)
    for v in reg.versions(name):
        table.add_row(
            str(v.version),
            "*" if v.version == champion else "",
            v.created_at,
            v.estimator,
            f"{v.metrics.get('roc_auc', float('nan')):.4f}",
            v.run_id,
            v.data_fingerprint[:12],
        )
    console.print(table)


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
