"""The Grafana dashboards, generated from code (grafana-foundation-sdk) and shipped as ConfigMaps
that Grafana's dashboard sidecar loads.

- rollout: RED per version (request rate, 4xx and 5xx ratio, p50/p90/p99 latency), the traffic
  share per version, and the series each rollout check reads (errors, latency, predictions);
- model health: live quality from label feedback, drift per feature against the PSI threshold,
  the share of drifted features, live feature means.

Every metric name comes from `serving.metrics`, so a renamed series changes the dashboards when
they are regenerated (`make grafana-dashboards`); tests/mlops_control/dashboard/test_grafana.py fails
while the committed ConfigMaps differ from this module's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as gcm
from grafana_foundation_sdk.models import dashboard as gm

from mlops_core.settings import Settings
from serving import metric_names as names
from serving import metrics as m

# The label the Grafana sidecar of kube-prometheus-stack selects dashboards by: its values.yaml,
# grafana.sidecar.dashboards.label / labelValue (tests/mlops_control/dashboard/test_grafana.py).
SIDECAR_LABEL, SIDECAR_LABEL_VALUE = "grafana_dashboard", "1"
NAMESPACE = "monitoring"  # next to the project's Prometheus (manifests/base/monitoring)
DATASOURCE = gm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'

REQUESTS = f"{names.REQUESTS_TOTAL}"
DURATION = names.REQUEST_DURATION_BUCKET
PREDICTIONS = m.PREDICTION_HISTOGRAMS["binary"][0]


@dataclass(frozen=True)
class PanelSpec:
    title: str
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    description: str = ""
    threshold: float | None = None  # drawn as a dashed line (e.g. the PSI threshold)


def _rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


def rollout_panels() -> list[PanelSpec]:
    by = "sum by (model, version)"
    total = f"{by} ({_rate(f'{REQUESTS}{{{MODEL}}}')})"

    def ratio(outcome: str) -> str:
        # A version that has had no such response has no such series: `or` a zero of the total's
        # labels, so the panel shows 0, not a gap.
        selector = REQUESTS + "{" + MODEL + ',outcome="' + outcome + '"}'
        errors = f"{by} ({_rate(selector)})"
        return f"({errors} or 0 * {total}) / {total}"

    def quantile(q: float) -> str:
        buckets = _rate(f"{DURATION}{{{MODEL}}}")
        return f"histogram_quantile({q}, sum by (model, version, le) ({buckets}))"

    predicted = f"{by} ({_rate(f'{PREDICTIONS}_sum{{{MODEL}}}')}) / {by} ({_rate(f'{PREDICTIONS}_count{{{MODEL}}}')})"
    legend = "{{model}} v{{version}}"
    return [
        PanelSpec("Requests per second by version (rate)", ((total, legend),), "reqps"),
        PanelSpec(
            "Traffic share per version",
            (
                (
                    f"{total} / ignoring(version) group_left sum by (model) "
                    f"({_rate(f'{REQUESTS}{{{MODEL}}}')})",
                    legend,
                ),
            ),
            "percentunit",
            "Each version's share of the model's requests: the canary's traffic weight as served.",
        ),
        PanelSpec(
            "errors check: server error ratio (5xx) by version",
            ((ratio("5xx"), legend),),
            "percentunit",
            "What the rollout's errors check compares: the canary's 5xx share against the stable's.",
        ),
        PanelSpec("Client error ratio (4xx) by version", ((ratio("4xx"), legend),), "percentunit"),
        PanelSpec(
            "latency check: p50 / p90 / p99 by version (duration)",
            tuple((quantile(q), f"{legend} p{round(q * 100)}") for q in (0.5, 0.9, 0.99)),
            "s",
            "What the rollout's latency check compares: the share of slow requests per version.",
        ),
        PanelSpec(
            "predictions check: mean predicted probability by version",
            ((predicted, legend),),
            "percentunit",
            "What the rollout's predictions check compares: the canary's predictions against the "
            "stable's (binary models).",
        ),
    ]


def model_health_panels(settings: Settings) -> list[PanelSpec]:
    legend = "{{model}} v{{version}}"
    by_feature = "{{model}} v{{version}} {{feature}}"
    value = f"sum by (model, version, feature) ({_rate(f'{names.FEATURE_VALUE}_sum{{{MODEL}}}')})"
    count = f"sum by (model, version, feature) ({_rate(f'{names.FEATURE_VALUE}_count{{{MODEL}}}')})"
    return [
        PanelSpec(
            "Live accuracy from label feedback",
            ((f"{names.LIVE_ACCURACY}{{{MODEL}}}", legend),),
            "percentunit",
        ),
        PanelSpec(
            "Live log loss from label feedback", ((f"{names.LIVE_LOG_LOSS}{{{MODEL}}}", legend),)
        ),
        PanelSpec(
            "Labelled rows in the quality window",
            ((f"{names.LIVE_LABELLED_ROWS}{{{MODEL}}}", legend),),
        ),
        PanelSpec(
            "Drift per feature: PSI vs the training reference",
            ((f"{names.DRIFT_PSI}{{{MODEL}}}", by_feature),),
            description="Dashed: the PSI threshold the drift monitor judges by.",
            threshold=settings.drift_psi,
        ),
        PanelSpec(
            "Share of features judged drifted",
            ((f"{names.DRIFT_SHARE_DRIFTED}{{{MODEL}}}", legend),),
            "percentunit",
        ),
        PanelSpec(
            "Features judged drifted",
            ((f"sum by (model, version) ({names.DRIFT_DETECTED}{{{MODEL}}})", legend),),
        ),
        PanelSpec("Live feature means (numeric features)", ((f"{value} / {count}", by_feature),)),
    ]


def _panel(panel_id: int, spec: PanelSpec) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(12)
    )
    for i, (expr, legend) in enumerate(spec.exprs):
        panel = panel.with_target(
            prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        )
    if spec.threshold is not None:
        steps = [
            gm.Threshold(value=None, color="green"),
            gm.Threshold(value=spec.threshold, color="red"),
        ]
        panel = panel.thresholds(
            gd.ThresholdsConfig().mode(gm.ThresholdsMode.ABSOLUTE).steps(steps)
        ).thresholds_style(
            gc.GraphThresholdsStyleConfig().mode(gcm.GraphThresholdsStyleMode.DASHED)
        )
    return panel


def _dashboard(uid: str, title: str, panels: list[PanelSpec]) -> dict[str, Any]:
    builder = (
        gd.Dashboard(title)
        .uid(uid)
        .tags(["mlops-platform"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(gd.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            gd.QueryVariable("model")
            .label("Model")
            .datasource(DATASOURCE)
            .query(f"label_values({REQUESTS}, model)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for i, spec in enumerate(panels, start=1):
        builder = builder.with_panel(_panel(i, spec))
    doc: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return doc


def dashboards(settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """Every dashboard by its uid, as Grafana's JSON model."""
    settings = settings or Settings()
    return {
        "mlops-rollout": _dashboard("mlops-rollout", "mlops-platform: rollout", rollout_panels()),
        "mlops-model-health": _dashboard(
            "mlops-model-health", "mlops-platform: model health", model_health_panels(settings)
        ),
    }


def configmap(uid: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{uid}-dashboard",
            "namespace": NAMESPACE,
            "labels": {SIDECAR_LABEL: SIDECAR_LABEL_VALUE},
        },
        "data": {f"{uid}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n"},
    }


class _BlockStyle(yaml.SafeDumper):
    """Multi-line strings (the dashboards' JSON) as `|` blocks, readable in a diff."""


_BlockStyle.add_representer(
    str,
    lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None),
)

HEADER = (
    "# Generated by `make grafana-dashboards` (mlops_control/dashboard/grafana.py); do not edit.\n"
)


def rendered_files() -> dict[str, str]:
    """File name -> content of every ConfigMap, and the kustomization listing them."""
    files = {
        f"{uid}.yaml": HEADER
        + yaml.dump(configmap(uid, doc), Dumper=_BlockStyle, sort_keys=False, width=100)
        for uid, doc in dashboards().items()
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def write_configmaps(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered_files().items():
        path = out / name
        path.write_text(text)
        written.append(path)
    return written
