"""`mlops experiment start|run|status`: bandit, A/B/n and shadow experiments through the local
router (`mlops canary router`). The strategies are in mlops_control/experiments/ and
docs/experiments.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.experiments.local_experiment import (
    Where,
    load,
    next_due,
    start,
    status,
    step,
)
from mlops_control.experiments.shadow import ShadowPolicy
from mlops_core.settings import load_settings

app = typer.Typer(
    help="Run a bandit, A/B/n or shadow experiment between model versions.",
    no_args_is_help=True,
)
console = Console()

ModelOpt = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]")
RouterOpt = typer.Option(None, "--router", help="local router URL [env MLOPS_CANARY_ROUTER_URL]")
RegistryOpt = typer.Option(None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]")
AuditOpt = typer.Option(
    None, "--audit-dir", help="the model servers' prediction logs [env MLOPS_AUDIT_DIR]"
)
SHADOW_POLL_S = 2.0  # a shadow has no interval: how often `run` reads its readout


def _where(
    model: str | None, router: str | None, registry: str | None, audit_dir: str | None
) -> Where:
    given = {"model_name": model, "canary_router_url": router, "registry_uri": registry}
    given["audit_dir"] = audit_dir
    s = load_settings(**{k: v for k, v in given.items() if v is not None})
    return Where(
        model=s.model_name,
        router_url=s.canary_router_url,
        registry_uri=s.registry_uri,
        audit_dir=Path(s.audit_dir),
        work_dir=Path(s.work_dir),
    )


def _policy_doc(path: Path, strategy: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExperimentPolicyError(f"experiment policy file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ExperimentPolicyError(f"experiment policy file {path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise ExperimentPolicyError(f"experiment policy file {path} is not a mapping")
    named = doc.setdefault("strategy", strategy)
    if named != strategy:
        raise ExperimentPolicyError(
            f"--strategy {strategy} but the policy file {path} says strategy: {named}"
        )
    return doc


@app.command("start")
def start_cmd(
    strategy: str = typer.Option(..., "--strategy", help="bandit, abn or shadow"),
    policy: Path = typer.Option(..., "--policy", help="the experiment policy (YAML or JSON)"),
    versions: str = typer.Option(
        "",
        "--versions",
        help="comma-separated versions, the control (the router's stable) first; shadow: "
        "primary,shadow; abn: default the policy's shares",
    ),
    model: str | None = ModelOpt,
    router: str | None = RouterOpt,
    registry: str | None = RegistryOpt,
    audit_dir: str | None = AuditOpt,
) -> None:
    """Start an experiment: the router splits traffic (or tees it to the shadow) as the policy
    says."""
    doc = _policy_doc(policy, strategy)
    chosen = [v.strip() for v in versions.split(",") if v.strip()]
    exp = start(_where(model, router, registry, audit_dir), doc, chosen)
    console.print(
        f"[green]{exp.strategy} experiment started over versions {', '.join(exp.versions)}[/green]"
    )


@app.command("run")
def run_cmd(
    max_intervals: int = typer.Option(0, "--max-intervals", help="stop after N (0: until done)"),
    model: str | None = ModelOpt,
    router: str | None = RouterOpt,
    registry: str | None = RegistryOpt,
    audit_dir: str | None = AuditOpt,
) -> None:
    """Step the experiment each interval until it ends: exit 0 with a winner or a passing shadow
    readout, 1 when guardrails stop it or the shadow fails, 3 after --max-intervals."""
    where = _where(model, router, registry, audit_dir)
    exp = load(where)
    shadow = isinstance(exp.parsed_policy(), ShadowPolicy)
    n = 0
    while True:
        # A run that starts late catches up one interval per step.
        time.sleep(SHADOW_POLL_S if shadow else max(next_due(exp) - time.time(), 0.0))
        exp = step(where)
        n += 1
        d = exp.last_decision or {}
        console.print(f"{d.get('action')}: {d.get('reason')}", soft_wrap=True)
        if "percents" in d:
            console.print(f"  shares {d['percents']}")
        if exp.done:
            break
        if max_intervals and n >= max_intervals:
            raise typer.Exit(3)
    ok = d.get("action") in ("winner", "pass")
    if d.get("winner"):
        console.print(f"[green]v{d['winner']} won: promoted and made the champion[/green]")
    elif ok and exp.policy.get("canary_percent"):
        console.print(
            f"[green]v{exp.versions[1]} passed: now the canary at {exp.policy['canary_percent']}%"
            " (`mlops canary run` takes it from there)[/green]"
        )
    elif not ok:
        console.print(f"[red]experiment ended: {d.get('action')}[/red]")
    raise typer.Exit(0 if ok else 1)


@app.command("status")
def status_cmd(
    model: str | None = ModelOpt,
    router: str | None = RouterOpt,
    registry: str | None = RegistryOpt,
    audit_dir: str | None = AuditOpt,
) -> None:
    """The experiment's state, the router's shares, the last decision and its readout."""
    console.print_json(json.dumps(status(_where(model, router, registry, audit_dir))))
