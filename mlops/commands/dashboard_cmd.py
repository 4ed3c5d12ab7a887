"""`mlops dashboard`: the read-only dashboard of every model, locally or in the cluster;
`mlops dashboard grafana`: write the Grafana dashboards' ConfigMaps."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from mlops_core.errors import InvalidInputError
from mlops_core.settings import Settings, load_settings

if TYPE_CHECKING:
    from mlops_control.dashboard.views import DashboardData

app = typer.Typer(
    help="The platform's dashboard (local or in-cluster), and the Grafana dashboards."
)
console = Console()
SOURCES = ("local", "cluster")


@app.callback(invoke_without_command=True)
def dashboard(
    ctx: typer.Context,
    source: str = typer.Option(
        "local",
        "--source",
        help="local: the registry and the JSON-lines logs; cluster: the registry, Prometheus and "
        "the Kubernetes API (the in-cluster Deployment)",
    ),
    registry: str | None = typer.Option(
        None, "--registry", help="registry URI (env MLOPS_REGISTRY_URI)"
    ),
    audit_dir: str | None = typer.Option(
        None,
        "--audit-dir",
        help="the model servers' logs: monitoring and decisions (env MLOPS_AUDIT_DIR)",
    ),
    logs: list[Path] = typer.Option(
        [], "--logs", help="another folder of decision logs (JSON lines); repeatable"
    ),
    work_dir: str | None = typer.Option(
        None,
        "--work-dir",
        help="local state; its canary/ folder holds `mlops canary run`'s logs (env MLOPS_WORK_DIR)",
    ),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="with --source cluster (env MLOPS_PROMETHEUS_URL)"
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", help="with --source cluster (env MLOPS_NAMESPACE)"
    ),
    kfp_host: str | None = typer.Option(
        None, "--kfp-host", help="KFP UI address for links to runs (env MLOPS_KFP_HOST)"
    ),
    host: str | None = typer.Option(
        None, "--host", help="address to bind (env MLOPS_DASHBOARD_HOST; default 127.0.0.1)"
    ),
    port: int | None = typer.Option(
        None, "--port", help="HTTP port (env MLOPS_DASHBOARD_HTTP_PORT; default 8095)"
    ),
) -> None:
    """Serve the dashboard on http://HOST:PORT/ until Ctrl-C. It only reads."""
    if ctx.invoked_subcommand is not None:
        return
    if source not in SOURCES:
        raise InvalidInputError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    s = load_settings(
        registry_uri=registry,
        audit_dir=audit_dir,
        work_dir=work_dir,
        prometheus_url=prometheus_url,
        namespace=namespace,
        kfp_host=kfp_host,
        dashboard_host=host,
        dashboard_http_port=port,
    )
    import uvicorn

    from mlops_control.dashboard.app import create_app

    app_ = create_app(build_data(s, source, logs), poll_interval_s=s.dashboard_poll_s)
    console.print(
        f"dashboard ({source}) on [bold]http://{s.dashboard_host}:{s.dashboard_http_port}/[/bold]"
        " (Ctrl-C stops it)"
    )
    uvicorn.run(app_, host=s.dashboard_host, port=s.dashboard_http_port, log_level="warning")


def build_data(s: Settings, source: str, logs: list[Path]) -> DashboardData:
    from mlops_control.dashboard.source import DashboardSource
    from mlops_control.dashboard.views import DashboardData
    from mlops_core.registry import ModelRegistry

    backend: DashboardSource
    if source == "cluster":
        from components.kube_client import load_api_client
        from mlops_control.dashboard.cluster_source import ClusterSource, Prometheus

        backend = ClusterSource(
            prometheus=Prometheus(s.prometheus_url),
            api=load_api_client(),
            namespace=s.namespace,
            psi_threshold=s.drift_psi,
        )
    else:
        from mlops_control.dashboard.local_source import LocalSource

        backend = LocalSource([s.audit_dir, Path(s.work_dir) / "canary", *logs])
    return DashboardData(ModelRegistry(s.registry_uri), backend, kfp_host=s.kfp_host)


@app.command("grafana")
def grafana(
    out: Path = typer.Option(
        Path("manifests/base/monitoring/grafana"),
        "--out",
        help="folder for the ConfigMaps (one YAML file per dashboard) and their kustomization",
    ),
) -> None:
    """Write the Grafana dashboards (rollout, model health) as ConfigMaps for Grafana's sidecar."""
    from mlops_control.dashboard.grafana import write_configmaps

    for path in write_configmaps(out):
        console.print(f"wrote {path}", soft_wrap=True, markup=False)
