"""`mlops canary start|status|promote|rollback|run|router|policy`: canary rollouts.

`--target local` drives the local router (`mlops canary router`, the laptop stand-in for Knative)
and reads the model servers' /metrics; `--target kubernetes` patches the InferenceService and
reads Prometheus. The decision rule and the policy fields are in serving/canary/ and the README.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mlops_core.registry import ModelRegistry
from mlops_core.settings import Settings, load_settings
from serving.canary.actuator import Target, TrafficActuator
from serving.canary.factory import new_actuator, new_source

app = typer.Typer(help="Roll a model version out as a canary and analyse it.", no_args_is_help=True)
console = Console()


ModelOpt = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]")
TargetOpt = typer.Option(Target.local, "--target", help="local router or the cluster")
RouterOpt = typer.Option(None, "--router", help="local router URL [env MLOPS_CANARY_ROUTER_URL]")
RegistryOpt = typer.Option(None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]")
NamespaceOpt = typer.Option(None, "--namespace", "-n", help="namespace [env MLOPS_NAMESPACE]")
IsvcOpt = typer.Option(None, "--isvc", help="InferenceService name (default: the model name)")
ContextOpt = typer.Option(None, "--context", help="kubeconfig context (default: current)")
ModeOpt = typer.Option(
    "auto",
    "--mode",
    help="kubernetes: 'auto' (the InferenceService's deploymentMode annotation), 'serverless' "
    "(canaryTrafficPercent) or 'standard' (spec.canary)",
)
ConfirmOpt = typer.Option(
    120.0,
    "--confirm-timeout",
    help="kubernetes: seconds to wait for the status to show the new split (0: do not wait)",
)
PolicyOpt = typer.Option(
    None, "--policy", help="rollout policy YAML/JSON [env MLOPS_CANARY_POLICY]"
)
LogOpt = typer.Option(None, "--log", help="decision log (JSON lines); default <work_dir>/canary/")


def _settings(**kw: Any) -> Settings:
    return load_settings(**{k: v for k, v in kw.items() if v is not None})


def _policy(settings: Settings, path: str | None):  # -> RolloutPolicy
    from serving.canary.policy import RolloutPolicy

    path = path or settings.canary_policy
    return RolloutPolicy.load(path) if path else RolloutPolicy()


def _actuator(
    target: Target,
    settings: Settings,
    isvc: str | None,
    context: str | None,
    confirm_timeout_s: float = 120.0,
    mode: str = "auto",
) -> TrafficActuator:
    return new_actuator(
        target,
        model=settings.model_name,
        router_url=settings.canary_router_url,
        namespace=settings.namespace,
        isvc=isvc,
        registry_uri=settings.registry_uri,
        context=context,
        confirm_timeout_s=confirm_timeout_s,
        mode=mode,
    )


def _log_path(settings: Settings, log: str | None) -> Path:
    return Path(log) if log else Path(settings.work_dir) / "canary" / f"{settings.model_name}.jsonl"


def _print_status(status: Any) -> None:
    console.print_json(json.dumps(status.to_dict(), default=str))


@app.command()
def router(
    model: str | None = ModelOpt,
    version: str = typer.Option("champion", "--version", help="the stable version to serve"),
    registry: str | None = RegistryOpt,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8090, "--port"),
) -> None:
    """Run the local router (stand-in for Knative) with the stable version behind it."""
    from serving.canary.router import RouterConfig, run_router

    s = _settings(model_name=model, registry_uri=registry)
    resolved = str(ModelRegistry(s.registry_uri).resolve(s.model_name, version))
    console.print(
        f"local router for {s.model_name} on http://{host}:{port} (stable v{resolved}); "
        "admin API under /router/"
    )
    run_router(
        RouterConfig(
            model=s.model_name,
            registry_uri=s.registry_uri,
            log_dir=Path(s.work_dir) / "canary" / "servers",
        ),
        resolved,
        host,
        port,
    )


@app.command()
def start(
    version: str = typer.Option(..., "--version", help="the version to roll out"),
    model: str | None = ModelOpt,
    target: Target = TargetOpt,
    router_url: str | None = RouterOpt,
    registry: str | None = RegistryOpt,
    namespace: str | None = NamespaceOpt,
    isvc: str | None = IsvcOpt,
    context: str | None = ContextOpt,
    policy: str | None = PolicyOpt,
    mode: str = ModeOpt,
    confirm_timeout: float = ConfirmOpt,
) -> None:
    """Deploy VERSION as the canary at the policy's first step."""
    s = _settings(
        model_name=model, canary_router_url=router_url, registry_uri=registry, namespace=namespace
    )
    p = _policy(s, policy)
    resolved = str(ModelRegistry(s.registry_uri).resolve(s.model_name, version))
    act = _actuator(target, s, isvc, context, confirm_timeout, mode)
    status = act.start(resolved, p.first_step)
    act.record_event(
        "start",
        f"canary v{resolved} started at {p.first_step}%",
        {"action": "start", "percent": p.first_step, "version": resolved},
    )
    console.print(f"[green]canary v{resolved} started at {p.first_step}%[/green]")
    _print_status(status)


@app.command()
def status(
    model: str | None = ModelOpt,
    target: Target = TargetOpt,
    router_url: str | None = RouterOpt,
    namespace: str | None = NamespaceOpt,
    isvc: str | None = IsvcOpt,
    context: str | None = ContextOpt,
    log: str | None = LogOpt,
    mode: str = ModeOpt,
) -> None:
    """Show the traffic split and the last decision."""
    from mlops_core.jsonl_log import DecisionLog

    s = _settings(model_name=model, canary_router_url=router_url, namespace=namespace)
    _print_status(_actuator(target, s, isvc, context, 0, mode).status())
    entries = DecisionLog(_log_path(s, log)).read()
    if entries:
        last = entries[-1]
        console.print(
            f"last decision ({last['at']}, v{last['stable_version']} -> v{last['canary_version']}):"
            f" {last['decision']['action']}: {last['decision']['reason']}"
        )


def _act_by_hand(action: str, act: TrafficActuator) -> Any:
    """Promote or roll back, and record the manual decision where the actuator keeps events."""
    st = act.promote() if action == "promote" else act.rollback()
    verb = "promoted" if action == "promote" else "rolled back"
    act.record_event(
        action, f"{verb} by hand (mlops canary {action})", {"action": action, "manual": True}
    )
    return st


@app.command()
def promote(
    model: str | None = ModelOpt,
    target: Target = TargetOpt,
    router_url: str | None = RouterOpt,
    namespace: str | None = NamespaceOpt,
    isvc: str | None = IsvcOpt,
    context: str | None = ContextOpt,
    mode: str = ModeOpt,
    confirm_timeout: float = ConfirmOpt,
) -> None:
    """Send all traffic to the canary by hand (it becomes the stable version)."""
    s = _settings(model_name=model, canary_router_url=router_url, namespace=namespace)
    st = _act_by_hand("promote", _actuator(target, s, isvc, context, confirm_timeout, mode))
    console.print(f"[green]promoted: v{st.stable_version} takes all traffic[/green]")
    _print_status(st)


@app.command()
def rollback(
    model: str | None = ModelOpt,
    target: Target = TargetOpt,
    router_url: str | None = RouterOpt,
    namespace: str | None = NamespaceOpt,
    isvc: str | None = IsvcOpt,
    context: str | None = ContextOpt,
    mode: str = ModeOpt,
    confirm_timeout: float = ConfirmOpt,
) -> None:
    """Send all traffic back to the stable version by hand."""
    s = _settings(model_name=model, canary_router_url=router_url, namespace=namespace)
    st = _act_by_hand("rollback", _actuator(target, s, isvc, context, confirm_timeout, mode))
    console.print(f"[yellow]rolled back: v{st.stable_version} takes all traffic[/yellow]")
    _print_status(st)


@app.command()
def run(
    model: str | None = ModelOpt,
    target: Target = TargetOpt,
    router_url: str | None = RouterOpt,
    registry: str | None = RegistryOpt,
    namespace: str | None = NamespaceOpt,
    isvc: str | None = IsvcOpt,
    context: str | None = ContextOpt,
    policy: str | None = PolicyOpt,
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus URL (kubernetes) [env MLOPS_PROMETHEUS_URL]"
    ),
    selector: str | None = typer.Option(
        None, "--selector", help='extra PromQL matchers, e.g. namespace="mlops"'
    ),
    log: str | None = LogOpt,
    update_champion: bool = typer.Option(
        True, help="make the promoted version the registry's champion"
    ),
    mode: str = ModeOpt,
    confirm_timeout: float = ConfirmOpt,
) -> None:
    """Analyse the running canary every interval and step up, promote or roll back."""
    from mlops_core.jsonl_log import DecisionLog
    from serving.canary.rollout import format_decision, run_rollout

    s = _settings(
        model_name=model,
        canary_router_url=router_url,
        registry_uri=registry,
        namespace=namespace,
        prometheus_url=prometheus,
        prometheus_selector=selector,
    )
    p = _policy(s, policy)
    act = _actuator(target, s, isvc, context, confirm_timeout, mode)
    decisions = DecisionLog(_log_path(s, log))

    def source_for(st: Any) -> Any:
        return new_source(
            target, status=st, prometheus_url=s.prometheus_url, selector=s.prometheus_selector
        )

    console.print(
        f"analysing every {p.analysis_interval_s:g} s; steps {list(p.steps)}; decisions -> "
        f"{decisions.path}"
    )
    final = run_rollout(
        model=s.model_name,
        actuator=act,
        source_for=source_for,
        policy=p,
        log=decisions,
        on_decision=lambda d, _: console.print(format_decision(d), soft_wrap=True, markup=False),
        on_plan=lambda plan: console.print(plan, soft_wrap=True, markup=False),
    )
    if final.action == "promote":
        if update_champion:
            _champion_after_promotion(s, decisions.read()[-1]["canary_version"], final.reason)
        console.print("[green]promoted[/green]")
        return
    console.print(f"[red]rolled back[/red]: {final.reason}", soft_wrap=True)
    sys.exit(1)


def _champion_after_promotion(s: Settings, version: str, reason: str) -> None:
    reg = ModelRegistry(s.registry_uri)
    if str(reg.champion(s.model_name)) != version:
        reg.set_champion(
            s.model_name, int(version), reason=f"canary promoted: {reason}", actor="canary"
        )


@app.command()
def controller(
    namespace: str | None = NamespaceOpt,
    context: str | None = ContextOpt,
    prometheus: str | None = typer.Option(
        None, "--prometheus", help="Prometheus URL [env MLOPS_PROMETHEUS_URL]"
    ),
    selector: str | None = typer.Option(
        None, "--selector", help='PromQL matchers (default: namespace="<namespace>")'
    ),
    resync: float = typer.Option(5.0, "--resync", help="seconds between two passes at most"),
    identity: str | None = typer.Option(None, "--identity", help="leader-election identity"),
    kfp_host: str | None = typer.Option(
        None, "--kfp-host", help="KFP API for retraining runs [env MLOPS_KFP_HOST]; none: off"
    ),
    package: str | None = typer.Option(
        None, "--package", help="compiled training pipeline (default: the installed one)"
    ),
) -> None:
    """Run the in-cluster canary controller for NAMESPACE (what the Deployment in manifests/ runs)."""
    import logging
    import socket

    from components.kube_client import load_api_client
    from serving.canary.controller import Controller, LeaderElection, Reconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    s = _settings(
        namespace=namespace,
        prometheus_url=prometheus,
        prometheus_selector=selector,
        kfp_host=kfp_host,
    )
    api = load_api_client(context)

    def source_for(ns: str) -> Any:
        return new_source(
            Target.kubernetes,
            prometheus_url=s.prometheus_url,
            selector=s.prometheus_selector or f'namespace="{ns}"',
        )

    election = LeaderElection(api, s.namespace, identity=identity or socket.gethostname())
    reconciler = Reconciler(api, source_for)
    retraining = None
    if s.kfp_host:
        from importlib.resources import files

        from serving.monitoring.cluster_trigger import PrometheusDriftReader, RetrainingWatch
        from serving.monitoring.retraining_trigger import KfpRunLauncher

        launcher = KfpRunLauncher(
            host=s.kfp_host,
            package_path=package or str(files("pipelines") / "training.yaml"),
            arguments={"registry_uri": s.registry_uri},
        )
        retraining = RetrainingWatch(
            PrometheusDriftReader(
                s.prometheus_url, selector=s.prometheus_selector or f'namespace="{s.namespace}"'
            ),
            launcher,
            record_event=reconciler.record_event,
            annotate=reconciler.annotate,
        )
    console.print(
        f"canary controller for namespace {s.namespace} (Prometheus {s.prometheus_url}); "
        f"leader election on Lease {s.namespace}/{election.name} as {election.identity}"
    )
    Controller(reconciler, election, s.namespace, resync_s=resync, retraining=retraining).run()


@app.command("policy")
def show_policy(path: str | None = typer.Argument(None, help="a policy file to validate")) -> None:
    """Print the default rollout policy, or validate and print a policy file."""
    from serving.canary.policy import RolloutPolicy

    p = RolloutPolicy.load(path) if path else RolloutPolicy()
    console.print_json(p.to_json())
