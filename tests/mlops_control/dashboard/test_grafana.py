"""The Grafana dashboards: generated from code, committed as the ConfigMaps Grafana's sidecar
loads, and querying only the series the model servers export (names from serving/metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from mlops_control.dashboard import grafana
from mlops_core.settings import Settings
from serving import metric_names, metrics

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "manifests" / "base" / "monitoring" / "grafana"


def test_committed_configmaps_are_the_generators_output() -> None:
    rendered = grafana.rendered_files()
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir()}
    assert committed == rendered, "regenerate them: make grafana-dashboards"


def test_the_configmaps_carry_the_grafana_sidecars_label() -> None:
    # kube-prometheus-stack's values.yaml (prometheus-community/helm-charts, charts/
    # kube-prometheus-stack, commit 001f3a6d): grafana.sidecar.dashboards.label is
    # grafana_dashboard and labelValue "1"; the sidecar loads ConfigMaps carrying that label.
    assert (grafana.SIDECAR_LABEL, grafana.SIDECAR_LABEL_VALUE) == ("grafana_dashboard", "1")
    for name in ("mlops-rollout.yaml", "mlops-model-health.yaml"):
        cm = yaml.safe_load((COMMITTED / name).read_text())
        assert cm["kind"] == "ConfigMap"
        assert cm["metadata"]["labels"] == {"grafana_dashboard": "1"}
        (doc,) = cm["data"].values()
        assert json.loads(doc)["uid"] == name.removesuffix(".yaml")


def exported_names() -> set[str]:
    """Every metric family the model server exports: serving/metric_names.py's constants and
    serving/metrics.py's metric objects."""
    names = {v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str)}
    names |= {v._name for v in vars(metrics).values() if hasattr(v, "_name")}
    names |= {name for name, _ in metrics.PREDICTION_HISTOGRAMS.values()}
    return {n for n in names if n.startswith("mlops_")}


def test_every_panel_queries_series_named_in_serving_metrics() -> None:
    known = exported_names()
    panels = [p for d in grafana.dashboards().values() for p in d["panels"]]
    assert len(panels) >= 12
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = {
                re.sub(r"_(total|bucket|sum|count)$", "", n)
                for n in re.findall(r"\b(mlops_[a-z0-9_]+)", target["expr"])
            }
            assert used and used <= known, (panel["title"], used - known)


def test_rollout_dashboard_has_red_per_version_and_each_check() -> None:
    rollout = grafana.dashboards()["mlops-rollout"]
    titles = " | ".join(p["title"] for p in rollout["panels"])
    for part in ("Requests per second", "5xx", "p99", "errors check", "latency check",
                 "predictions check", "Traffic share"):  # fmt: skip
        assert part in titles, part
    for panel in rollout["panels"]:
        for target in panel["targets"]:
            assert "version" in target["expr"] or "group_left" in target["expr"]


def test_model_health_draws_the_drift_threshold_the_monitor_uses() -> None:
    health = grafana.dashboards()["mlops-model-health"]
    (drift,) = [p for p in health["panels"] if p["title"].startswith("Drift per feature")]
    steps = drift["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == Settings().drift_psi
    assert drift["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
