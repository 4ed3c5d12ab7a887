"""`mlops canary start|status|promote|rollback|run|router|policy`: canary rollouts.

`--target local` drives the local router (`mlops canary router`, the laptop stand-in for the
cluster gateway's weighted routes) and reads the model servers' /metrics; `--target kubernetes`
patches the InferenceService and reads Prometheus. The decision rule and the policy fields are in mlops_control/rollout/ and the README.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from mlops_control.rollout.factory import new_actuator, new_source
from mlops_control.traffic.actuator import Target, TrafficActuator
from mlops_core.registry import ModelRegistry
from mlops_core.settings import (
    DEFAULT_CONFIRM_TIMEOUT_S,
    DEFAULT_CONTROLLER_RESYNC_S,
    Settings,
    load_settings,
)

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
    DEFAULT_CONFIRM_TIMEOUT_S,
    "--confirm-timeout",
    help="kubernetes: seconds to wait for the status to show the new split (0: do not wait)",
)
PolicyOpt = typer.Option(
    None, "--policy", help="rollout policy YAML/JSON [env MLOPS_CANARY_POLICY]"
)
LogOpt = typer.Option(None, "--log", help="decision log (JSON lines); default <work_dir>/canary/")


@dataclass(frozen=True)
class Where:
    """Where a canary command acts: the options `start`, `status`, `promote`, `rollback` and
    `run` share, declared once (`_WHERE_OPTIONS`) and handed to each as `where`."""

    model: str | None
    target: Target
    router_url: str | None
    namespace: str | None
    isvc: str | None
    context: str | None
    mode: str
    confirm_timeout: float


_WHERE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (str | None, ModelOpt),
    "target": (Target, TargetOpt),
    "router_url": (str | None, RouterOpt),
    "namespace": (str | None, NamespaceOpt),
    "isvc": (str | None, IsvcOpt),
    "context": (str | None, ContextOpt),
    "mode": (str, ModeOpt),
    "confirm_timeout": (float, ConfirmOpt),
}


def _where_options(*, waits: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options: typer sees them as the command's own, after its own;
    the command gets them as one `where: Where`. A command that changes no traffic (`waits`
    False) has no --confirm-timeout."""
    names = [n for n in _WHERE_OPTIONS if waits or n != "confirm_timeout"]

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn, eval_str=True).parameters.values()
            if p.name != "where"
        ]
        shared = [
            inspect.Parameter(
                n,
                inspect.Parameter.KEYWORD_ONLY,
                default=_WHERE_OPTIONS[n][1],
                annotation=_WHERE_OPTIONS[n][0],
            )
            for n in names
        ]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> None:
            values = {n: kwargs.pop(n) for n in names}
            fn(where=Where(**{"confirm_timeout": 0.0} | values), **kwargs)

        del command.__wrapped__  # typer reads the signature below, not fn's
        # Read by inspect.signature (typer's source of a command's parameters).
        command.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in [*own, *shared]}
        return command

    return decorate


def _settings(**kw: Any) -> Settings:
    return load_settings(**{k: v for k, v in kw.items() if v is not None})


def _policy(settings: Settings, path: str | None):  # -> RolloutPolicy
    from mlops_control.rollout.policy import RolloutPolicy

    path = path or settings.canary_policy
    return RolloutPolicy.load(path) if path else RolloutPolicy()


def _settings_for(where: Where, **kw: Any) -> Settings:
    return _settings(
        model_name=where.model,
        canary_router_url=where.router_url,
        namespace=where.namespace,
        **kw,
    )


def _actuator(where: Where, settings: Settings) -> TrafficActuator:
    return new_actuator(
        where.target,
        model=settings.model_name,
        router_url=settings.canary_router_url,
        namespace=settings.namespace,
        isvc=where.isvc,
        registry_uri=settings.registry_uri,
        context=where.context,
        confirm_timeout_s=where.confirm_timeout,
        mode=where.mode,
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
    """Run the local router (the cluster gateway's stand-in) with the stable version behind it."""
    from mlops_control.traffic.router import RouterConfig, run_router

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
@_where_options()
def start(
    where: Where,
    version: str = typer.Option(..., "--version", help="the version to roll out"),
    registry: str | None = RegistryOpt,
    policy: str | None = PolicyOpt,
) -> None:
    """Deploy VERSION as the canary at the policy's first step (if VERSION is already the canary,
    say so and leave it: `mlops canary run` analyses it from where it is)."""
    s = _settings_for(where, registry_uri=registry)
    p = _policy(s, policy)
    # A version number needs no read of the store (a cluster's s3:// registry need not be
    # reachable from here); champion/latest are read from it.
    resolved = str(ModelRegistry(s.registry_uri).resolve(s.model_name, version))
    act = _actuator(where, s)
    running = act.status()
    if running.canary_version == resolved:
        # The pipeline's deploy step already put it out: resume, do not restart.
        console.print(
            f"canary v{resolved} is already running at {running.canary_percent}%; "
            "`mlops canary run` analyses it from there"
        )
        _print_status(running)
        return
    status = act.start(resolved, p.first_step)
    act.record_event(
        "start",
        f"canary v{resolved} started at {p.first_step}%",
        {"action": "start", "percent": p.first_step, "version": resolved},
    )
    console.print(f"[green]canary v{resolved} started at {p.first_step}%[/green]")
    _print_status(status)


@app.command()
@_where_options(waits=False)
def status(where: Where, log: str | None = LogOpt) -> None:
    """Show the traffic split and the last decision."""
    from mlops_core.jsonl_log import DecisionLog

    s = _settings_for(where)
    _print_status(_actuator(where, s).status())
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
@_where_options()
def promote(where: Where) -> None:
    """Send all traffic to the canary by hand (it becomes the stable version)."""
    s = _settings_for(where)
    st = _act_by_hand("promote", _actuator(where, s))
    console.print(f"[green]promoted: v{st.stable_version} takes all traffic[/green]")
    _print_status(st)


@app.command()
@_where_options()
def rollback(where: Where) -> None:
    """Send all traffic back to the stable version by hand."""
    s = _settings_for(where)
    st = _act_by_hand("rollback", _actuator(where, s))
    console.print(f"[yellow]rolled back: v{st.stable_version} takes all traffic[/yellow]")
    _print_status(st)


@app.command()
@_where_options()
def run(
    where: Where,
    registry: str | None = RegistryOpt,
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
) -> None:
    """Analyse the running canary every interval and step up, promote or roll back."""
    from mlops_control.rollout.loop import format_decision, run_rollout
    from mlops_core.jsonl_log import DecisionLog

    s = _settings_for(
        where, registry_uri=registry, prometheus_url=prometheus, prometheus_selector=selector
    )
    p = _policy(s, policy)
    act = _actuator(where, s)
    decisions = DecisionLog(_log_path(s, log))

    def source_for(st: Any) -> Any:
        return new_source(
            where.target,
            status=st,
            prometheus_url=s.prometheus_url,
            selector=s.prometheus_selector,
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
    resync: float = typer.Option(
        DEFAULT_CONTROLLER_RESYNC_S, "--resync", help="seconds between two passes at most"
    ),
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
    import signal
    import socket

    from components.isvc_traffic import role_pods
    from components.kube_client import load_api_client
    from mlops_control.controller import Controller, LeaderElection, Reconciler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    s = _settings(
        namespace=namespace,
        prometheus_url=prometheus,
        prometheus_selector=selector,
        kfp_host=kfp_host,
    )
    api = load_api_client(context)

    def source_for(isvc: dict[str, Any]) -> Any:
        return new_source(
            Target.kubernetes,
            prometheus_url=s.prometheus_url,
            selector=s.prometheus_selector or f'namespace="{isvc["metadata"]["namespace"]}"',
            pods=role_pods(isvc),
        )

    election = LeaderElection(api, s.namespace, identity=identity or socket.gethostname())
    reconciler = Reconciler(api, source_for)
    retraining = None
    if s.kfp_host:
        from mlops_control.retraining.cluster_trigger import PrometheusDriftReader, RetrainingWatch
        from mlops_control.retraining.trigger import KfpRunLauncher
        from mlops_control.traffic.isvc_changes import KubernetesChanges
        from pipelines.training import GOLDEN_YAML

        launcher = KfpRunLauncher(
            host=s.kfp_host,
            package_path=package or str(GOLDEN_YAML),
            arguments={"registry_uri": s.registry_uri},
        )
        retraining = RetrainingWatch(
            PrometheusDriftReader(
                s.prometheus_url, selector=s.prometheus_selector or f'namespace="{s.namespace}"'
            ),
            launcher,
            changes=KubernetesChanges(api),
        )
    console.print(
        f"canary controller for namespace {s.namespace} (Prometheus {s.prometheus_url}); "
        f"leader election on Lease {s.namespace}/{election.name} as {election.identity}"
    )

    def shut_down(*_: object) -> None:
        # Kubernetes stops a pod with SIGTERM: hand the Lease over now, so the other replica acts
        # at its next pass rather than once the Lease expires after the grace period's SIGKILL.
        released = election.release()
        console.print(f"stopping{'; Lease released' if released else ''}")
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shut_down)
    Controller(reconciler, election, s.namespace, resync_s=resync, retraining=retraining).run()


@app.command("policy")
def show_policy(path: str | None = typer.Argument(None, help="a policy file to validate")) -> None:
    """Print the default rollout policy, or validate and print a policy file."""
    from mlops_control.rollout.policy import RolloutPolicy

    p = RolloutPolicy.load(path) if path else RolloutPolicy()
    console.print_json(p.to_json())


@app.command()
def traffic(
    url: str = typer.Argument(
        ..., help="a model server or the gateway, e.g. http://localhost:31080"
    ),
    data: str = typer.Option(..., "--data", help="CSV or Parquet file whose rows requests carry"),
    drop: list[str] = typer.Option([], "--drop", help="a column to leave out, e.g. the label"),
    model: str | None = ModelOpt,
    host_header: str | None = typer.Option(
        None,
        "--host-header",
        help="Host header the gateway routes by, e.g. churn-mlops.example.com",
    ),
    seconds: float = typer.Option(0, "--seconds", min=0, help="stop after this long (0: never)"),
    workers: int = typer.Option(2, "--workers", min=1, help="requests in flight at once"),
) -> None:
    """Send V1 predict requests made of DATA's rows to URL until stopped (Ctrl-C, SIGTERM or
    --seconds), so a canary's analysis has traffic; then count the answers by version and status."""
    import signal
    import threading

    from components.ingest import read_table
    from mlops_core.errors import InvalidInputError
    from mlops_demo.canary_traffic import TrafficGenerator
    from serving.v1_instances import v1_instances

    s = _settings(model_name=model)
    frame = read_table(data)
    missing = sorted(set(drop) - set(frame.columns))
    if missing:
        raise InvalidInputError(f"--drop {missing}: not columns of {data} ({list(frame.columns)})")
    rows = v1_instances(frame.drop(columns=drop))
    if not rows:
        raise InvalidInputError(f"{data} has no rows")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    generator = TrafficGenerator(
        url,
        s.model_name,
        workers=workers,
        pool=rows,
        headers={"Host": host_header} if host_header else None,
    )
    console.print(
        f"sending {s.model_name} requests to {generator.endpoint} from {len(rows)} rows "
        f"({workers} in flight); Ctrl-C stops",
        soft_wrap=True,
    )
    with generator, contextlib.suppress(KeyboardInterrupt):
        stop.wait(seconds or None)
    tally = generator.tally
    by_answer = ", ".join(
        f"v{v} {status}: {n}" for (_, v, status), n in sorted(tally.by_side.items())
    )
    console.print(
        f"sent {tally.served() + tally.transport_errors} requests: {by_answer or 'none answered'}; "
        f"transport errors: {tally.transport_errors}",
        soft_wrap=True,
    )
