"""The dashboard's cluster backend: Prometheus' HTTP API for the series the model servers export
(drift, live quality, requests), and the Kubernetes API (read only) for the InferenceServices'
rollout state and their Events.

Queries are built from the metric names in `serving.metrics`. The portfolio asks Prometheus once
per metric for every model together (instant queries), so it costs the same for 1 or 20 models.
A rollout's checks over time come from the `mlops.platform/rollout-status` annotation the
controller writes at each decision: this process keeps every status it has seen (bounded), and
the Events give the decisions' markers from before it started.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import defaultdict, deque
from typing import Any

import httpx
from kubernetes import client

from components.inference_service import GROUP, PLURAL, VERSION
from components.isvc_traffic import annotations_of, mode_of, role_pods
from mlops_control.controller import STATUS_ANNOTATION
from mlops_control.dashboard.source import HISTORY_POINTS, check_points, unix
from mlops_control.records import DecisionRecord
from mlops_control.rollout.prometheus_source import ROLE_LABEL, ROLES, tagged_by_role
from mlops_control.traffic.kubernetes_actuator import EVENT_REASONS
from mlops_core.errors import MlopsError
from serving import metric_names as names

MODEL_LABEL = "app.kubernetes.io/name"  # components/inference_service.py labels each ISVC
ROLLOUT_REASONS = {EVENT_REASONS[a]: a for a in ("step_up", "hold", "promote", "rollback")}
RETRAIN_REASON = EVENT_REASONS["retrain"]
_KFP_RUN = re.compile(r"KFP run (\S+) started")


class PrometheusQueryError(MlopsError):
    """Prometheus could not answer a query."""


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self._http = httpx.Client(timeout=timeout_s)

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            r = self._http.get(f"{self.url}{path}", params=params)
            doc = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise PrometheusQueryError(f"Prometheus at {self.url} did not answer: {e}") from e
        if doc.get("status") != "success":
            raise PrometheusQueryError(
                f"Prometheus refused {params.get('query')!r}: {doc.get('error', r.status_code)}"
            )
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def instant(self, promql: str) -> list[dict[str, Any]]:
        return self._get("/api/v1/query", {"query": promql})

    def range(self, promql: str, seconds: float, points: int = 240) -> list[dict[str, Any]]:
        end = time.time()
        step = max(seconds / points, 5.0)
        return self._get(
            "/api/v1/query_range",
            {"query": promql, "start": end - seconds, "end": end, "step": f"{step:.0f}s"},
        )


def _pts(series: dict[str, Any]) -> list[list[float]]:
    return [[float(t), float(v)] for t, v in series.get("values", [])]


def _quote(value: str) -> str:
    return json.dumps(value)  # a PromQL string literal is a JSON string


class PrometheusSeries:
    """The model servers' series the dashboard reads, as PromQL over `serving.metrics` names."""

    def __init__(self, prom: Prometheus, range_s: float = 3600.0) -> None:
        self.prom, self.range_s = prom, range_s

    def latest(self) -> dict[str, dict[tuple[str, str], Any]]:
        """For every (model, version): share drifted, drifted features, accuracy, labelled rows."""
        drifted: dict[tuple[str, str], list[str]] = defaultdict(list)
        for s in self.prom.instant(f"{names.DRIFT_DETECTED} == 1"):
            lab = s["metric"]
            drifted[(lab.get("model", ""), lab.get("version", ""))].append(lab.get("feature", ""))
        return {
            "share": _by_model_version(self.prom.instant(names.DRIFT_SHARE_DRIFTED)),
            "drifted": dict(drifted),
            "accuracy": _by_model_version(self.prom.instant(names.LIVE_ACCURACY)),
            "labelled": _by_model_version(self.prom.instant(names.LIVE_LABELLED_ROWS)),
        }

    def quality(self, model: str) -> dict[str, list[list[Any]]]:
        result = self.prom.range(f"{names.LIVE_ACCURACY}{{model={_quote(model)}}}", self.range_s)
        return {s["metric"].get("version", ""): [[t, v, None] for t, v in _pts(s)] for s in result}

    def drift(self, model: str, version: str | None) -> dict[str, Any]:
        sel = f"model={_quote(model)}" + (f",version={_quote(version)}" if version else "")
        psi = self.prom.range(f"{names.DRIFT_PSI}{{{sel}}}", self.range_s)
        share = self.prom.range(f"{names.DRIFT_SHARE_DRIFTED}{{{sel}}}", self.range_s)
        return {
            "series": {s["metric"].get("feature", ""): _pts(s) for s in psi},
            "share_drifted": _pts(share[0]) if share else [],
        }

    def traffic_share(
        self, model: str, pods: tuple[str, str] | None = None
    ) -> dict[str, list[list[float]]]:
        """Each version's share of the model's requests per second, over time. In an image-only
        rollout both sides report one version; `pods` (the stable's and the canary's pod-name
        patterns, `role_pods`) then splits it by role, keyed `<version> stable|canary`."""
        model_sel = f"model={_quote(model)}"
        total = f"sum(rate({names.REQUESTS_TOTAL}{{{model_sel}}}[1m]))"
        if pods is None:
            promql = (
                f"sum by (version) (rate({names.REQUESTS_TOTAL}{{{model_sel}}}[1m])) "
                f"/ ignoring(version) group_left {total}"
            )
            key: tuple[str, ...] = ("version",)
        else:
            by_role = tagged_by_role(
                (
                    role,
                    f'sum by (version) (rate({names.REQUESTS_TOTAL}{{{model_sel},pod=~"{pattern}"}}[1m]))',
                )
                for role, pattern in zip(ROLES, pods, strict=True)
            )
            promql = f"({by_role}) / ignoring(version, {ROLE_LABEL}) group_left {total}"
            key = ("version", ROLE_LABEL)
        return {
            " ".join(s["metric"].get(k, "") for k in key): _pts(s)
            for s in self.prom.range(promql, self.range_s)
        }

    def feature(self, model: str, name: str, version: str | None) -> dict[str, Any]:
        sel = f"model={_quote(model)},feature={_quote(name)}" + (
            f",version={_quote(version)}" if version else ""
        )
        psi = self.prom.range(f"{names.DRIFT_PSI}{{{sel}}}", self.range_s)
        categories = {
            s["metric"].get("category", ""): float(s["value"][1])
            for s in self.prom.instant(f"{names.FEATURE_CATEGORY}_total{{{sel}}}")
        }
        missing = self.prom.instant(f"{names.FEATURE_MISSING}_total{{{sel}}}")
        count = self.prom.instant(f"{names.FEATURE_VALUE}_count{{{sel}}}")
        total = self.prom.instant(f"{names.FEATURE_VALUE}_sum{{{sel}}}")
        squares = self.prom.instant(f"{names.FEATURE_VALUE_SQUARES}_total{{{sel}}}")
        moments = None
        if count and total and squares and float(count[0]["value"][1]):
            n = float(count[0]["value"][1])
            mean = float(total[0]["value"][1]) / n
            var = max(float(squares[0]["value"][1]) / n - mean * mean, 0.0)
            moments = {"count": n, "mean": mean, "std": var**0.5}
        points = _pts(psi[0]) if psi else []
        return {
            "category_counts": categories or None,
            "missing": float(missing[0]["value"][1]) if missing else None,
            "moments": moments,
            "rows": int(moments["count"]) if moments else int(sum(categories.values())),
            "psi": points,
            "latest_psi": points[-1][1] if points else None,
        }


def _by_model_version(result: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {
        (s["metric"].get("model", ""), s["metric"].get("version", "")): float(s["value"][1])
        for s in result
    }


class ClusterSource:
    kind = "cluster"

    def __init__(
        self,
        *,
        prometheus: Prometheus,
        api: client.ApiClient,
        namespace: str,
        psi_threshold: float,
        range_s: float = 3600.0,
    ) -> None:
        self.series, self.namespace = PrometheusSeries(prometheus, range_s), namespace
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.thresholds = {"psi": psi_threshold}
        self._statuses: dict[str, deque[dict[str, Any]]] = defaultdict(
            lambda: deque(maxlen=HISTORY_POINTS)
        )
        self._lock = threading.Lock()

    # --- Kubernetes ----------------------------------------------------------------------------
    def _isvcs(self) -> dict[str, dict[str, Any]]:
        found = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        out = {}
        for isvc in found.get("items", []):
            meta = isvc.get("metadata", {})
            out[(meta.get("labels") or {}).get(MODEL_LABEL) or meta["name"]] = isvc
        return out

    def _rollout(self, model: str, isvc: dict[str, Any]) -> dict[str, Any] | None:
        mode = mode_of(isvc)
        percent, canary = mode.canary_percent(isvc), mode.canary_version(isvc)
        status = self._remember_status(model, isvc)
        if canary is not None and percent:
            return {
                "in_progress": True,
                "stable": mode.stable_version(isvc),
                "canary": canary,
                "canary_percent": percent,
                "outcome": None,
                "isvc": isvc["metadata"]["name"],
            }
        if status is None:
            return None
        final = status.get("action") in ("promote", "rollback")
        return {
            "in_progress": not final,
            "stable": str(status.get("stable")),
            "canary": str(status.get("canary")),
            "canary_percent": status.get("percent"),
            "outcome": status.get("action") if final else None,
            "isvc": isvc["metadata"]["name"],
        }

    def _remember_status(self, model: str, isvc: dict[str, Any]) -> dict[str, Any] | None:
        raw = annotations_of(isvc).get(STATUS_ANNOTATION)
        try:
            status = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return None
        if not isinstance(status, dict):
            return None
        with self._lock:
            seen = self._statuses[model]
            if not seen or seen[-1].get("at") != status.get("at"):
                seen.append(status)
        return status

    def _events(self, isvc_name: str) -> list[Any]:
        found = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={isvc_name}"
        )
        return sorted(found.items, key=lambda e: _event_time(e) or 0.0)

    # --- answers -------------------------------------------------------------------------------
    def live(self) -> dict[str, dict[str, Any]]:
        isvcs = self._isvcs()
        latest = self.series.latest()
        share, accuracy = latest["share"], latest["accuracy"]
        now = time.time()
        out: dict[str, dict[str, Any]] = {}
        for model in sorted(set(isvcs) | {k[0] for k in share} | {k[0] for k in accuracy}):
            isvc = isvcs.get(model)
            rollout = self._rollout(model, isvc) if isvc else None
            stable = rollout["stable"] if rollout else _served_version(isvc)
            drift_key = _pick(share, model, stable)
            quality_key = _pick(accuracy, model, stable)
            out[model] = {
                "drift": drift_key
                and {
                    "at": now,
                    "version": drift_key[1],
                    "share_drifted": share[drift_key],
                    "drifted": sorted(latest["drifted"].get(drift_key, [])),
                },
                "quality": quality_key
                and {
                    "at": now,
                    "version": quality_key[1],
                    "accuracy": accuracy[quality_key],
                    "rmse": None,
                    "labelled": latest["labelled"].get(quality_key),
                },
                "rollout": rollout,
                "last_decision": _last_decision(isvc) if isvc else None,
            }
        return out

    def history(self, model: str) -> dict[str, Any]:
        isvc = self._isvcs().get(model)
        rollout = self._rollout(model, isvc) if isvc else None
        stable = rollout["stable"] if rollout else _served_version(isvc)
        return {
            "drift": {"version": stable, "thresholds": self.thresholds}
            | self.series.drift(model, stable),
            "quality": self.series.quality(model),
            "rollout": self._rollout_history(model, isvc, rollout) if isvc and rollout else None,
            "retraining": self._retraining(isvc) if isvc else [],
        }

    def _rollout_history(
        self, model: str, isvc: dict[str, Any], rollout: dict[str, Any]
    ) -> dict[str, Any]:
        with self._lock:
            statuses = [
                s
                for s in self._statuses[model]
                if str(s.get("canary")) == rollout["canary"] and unix(s.get("at")) is not None
            ]
        checks: dict[str, list[list[Any]]] = defaultdict(list)
        for s in statuses:
            listed = [
                {"name": n, "status": st, "numbers": (s.get("numbers") or {}).get(n, {})}
                for n, st in (s.get("checks") or {}).items()
            ]
            at = unix(s["at"])
            if at is None:  # kept out above; this says so to the type checker
                continue
            for name, point in check_points(at, listed).items():
                checks[name].append(point)
        decisions = [
            {
                "at": _event_time(e),
                "action": ROLLOUT_REASONS[e.reason],
                "reason": e.message,
                "canary_percent": None,
                "previous_percent": None,
            }
            for e in self._events(isvc["metadata"]["name"])
            if e.reason in ROLLOUT_REASONS
        ]
        return rollout | {
            "share": self.series.traffic_share(model, role_pods(isvc)),
            "checks": dict(checks),
            "decisions": decisions,
        }

    def _retraining(self, isvc: dict[str, Any]) -> list[dict[str, Any]]:
        runs = []
        for e in self._events(isvc["metadata"]["name"]):
            if e.reason != RETRAIN_REASON:
                continue
            found = _KFP_RUN.search(e.message or "")
            runs.append(
                {
                    "at": _event_time(e),
                    "event": "retraining_triggered",
                    "reason": e.message,
                    "run_id": found.group(1) if found else None,
                    "run_name": None,
                    "runner": "kfp",
                    "version": None,
                }
            )
        return runs

    def feature(self, model: str, name: str) -> dict[str, Any]:
        version = _served_version(self._isvcs().get(model))
        found = self.series.feature(model, name, version)
        psi = found.pop("latest_psi")
        drifted = None if psi is None else psi >= self.thresholds["psi"]
        return found | {
            "version": version,
            "counts": None,
            "latest": {"psi": psi, "drifted": drifted},
            "thresholds": self.thresholds,
        }


def _served_version(isvc: dict[str, Any] | None) -> str | None:
    if isvc is None:
        return None
    mode = mode_of(isvc)
    return mode.stable_version(isvc)


def _pick(values: dict[tuple[str, str], float], model: str, version: str | None) -> Any:
    """The (model, version) key to show: the stable version's, else the model's first."""
    if version is not None and (model, version) in values:
        return (model, version)
    return next((k for k in sorted(values) if k[0] == model), None)


def _last_decision(isvc: dict[str, Any]) -> dict[str, Any] | None:
    record = DecisionRecord.of(isvc)
    if record is None:
        return None
    return {
        "at": unix(record.at),
        "kind": "rollout",
        "action": record.action,
        "reason": record.reason,
    }


def _event_time(e: Any) -> float | None:
    for t in (
        getattr(e, "last_timestamp", None),
        getattr(e, "event_time", None),
        getattr(e, "first_timestamp", None),
    ):
        if t is not None:
            return float(t.timestamp())
    return None
