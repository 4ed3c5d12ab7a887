"""The pages' JSON: the registry (versions, lineage, champions, training reference, slice metrics)
`DashboardSource` (live quality, drift, rollouts, decisions, retraining runs).

Registry reads are cached for `registry_ttl_s`: a page polled every few seconds by several
browsers reads the store at most once per interval, which keeps the portfolio fast with many models.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from mlops_control.dashboard.source import DashboardSource, unix
from mlops_core.drift import FeatureProfile
from mlops_core.errors import NotFoundError
from mlops_core.registry import ModelRegistry, RegistryError
from mlops_core.slices import MISSING_SLICE, SliceMetrics
from serving.metrics import OTHER_CATEGORY

# The live quality metric the portfolio sets beside the same metric at training time.
QUALITY_METRICS = ("accuracy", "rmse")


class UnknownModelError(NotFoundError):
    """The dashboard was asked for a model or feature neither the registry nor the logs know."""


@dataclass(frozen=True)
class _Snapshot:
    at: float
    models: dict[str, dict[str, Any]]  # name -> {"versions": [...], "champion": {...}}


class DashboardData:
    def __init__(
        self,
        registry: ModelRegistry,
        source: DashboardSource,
        *,
        kfp_host: str = "",
        registry_ttl_s: float = 10.0,
    ) -> None:
        self.registry, self.source = registry, source
        self.kfp_host = kfp_host.rstrip("/")
        self.registry_ttl_s = registry_ttl_s
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    # --- the registry, cached ------------------------------------------------------------------
    def _registry(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            now = time.monotonic()
            if self._snapshot is None or now - self._snapshot.at > self.registry_ttl_s:
                self._snapshot = _Snapshot(now, self._read_registry())
            return self._snapshot.models

    def _read_registry(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            names = self.registry.models()
        except (RegistryError, FileNotFoundError):
            return out
        for name in names:
            try:
                versions = [v.to_dict() for v in self.registry.versions(name)]
                champion = self.registry.champion_doc(name)
            except RegistryError as e:  # one broken model must not hide the others
                out[name] = {"versions": [], "champion": {"version": None}, "error": str(e)}
                continue
            out[name] = {"versions": versions, "champion": champion}
        return out

    def run_url(self, run_id: str | None, runner: str | None = None) -> str | None:
        if not run_id or not self.kfp_host or runner == "kfp.local":
            return None
        return f"{self.kfp_host}/#/runs/details/{run_id}"

    # --- pages ---------------------------------------------------------------------------------
    def portfolio(self) -> dict[str, Any]:
        registry, live = self._registry(), self.source.live()
        rows = [
            self._portfolio_row(name, registry.get(name), live.get(name) or {})
            for name in sorted(set(registry) | set(live))
        ]
        return {"source": self.source.kind, "generated_at": time.time(), "models": rows}

    def _portfolio_row(
        self, name: str, reg: dict[str, Any] | None, live: dict[str, Any]
    ) -> dict[str, Any]:
        reg = reg or {"versions": [], "champion": {"version": None}}
        champion = reg["champion"].get("version")
        record = next((v for v in reg["versions"] if v["version"] == champion), None)
        metrics = (record or {}).get("metrics") or {}
        metric = next((m for m in QUALITY_METRICS if m in metrics), None)
        return {
            "name": name,
            "versions": len(reg["versions"]),
            "champion": champion,
            "champion_since": unix(reg["champion"]["history"][-1].get("at"))
            if reg["champion"].get("history")
            else None,
            "training_metric": {"name": metric, "value": metrics[metric]} if metric else None,
            "quality": live.get("quality"),
            "drift": live.get("drift"),
            "rollout": live.get("rollout"),
            "last_decision": live.get("last_decision"),
            "error": reg.get("error"),
        }

    def model(self, name: str) -> dict[str, Any]:
        registry = self._registry()
        live = self.source.live()
        if name not in registry and name not in live:
            raise UnknownModelError(f"no model named {name!r} in the registry or the logs")
        reg = registry.get(name) or {"versions": [], "champion": {"version": None, "history": []}}
        history = self.source.history(name)
        for run in history.get("retraining", []):
            run["run_url"] = self.run_url(run.get("run_id"), run.get("runner"))
        versions = []
        for v in reg["versions"]:
            versions.append(
                {
                    k: v.get(k)
                    for k in (
                        "version",
                        "created_at",
                        "metrics",
                        "run_id",
                        "data_fingerprint",
                        "data_source",
                        "code_version",
                        "estimator",
                    )
                }
                | {
                    "run_url": self.run_url(v.get("run_id")),
                    "champion": v["version"] == reg["champion"].get("version"),
                }
            )
        features: list[str] = []
        champion = reg["champion"].get("version")
        if champion is not None:
            try:
                features = list(self.registry.schema(name, champion).feature_names)
            except RegistryError:
                features = []
        return {
            "name": name,
            "source": self.source.kind,
            "generated_at": time.time(),
            "champion": champion,
            "champion_history": reg["champion"].get("history", []),
            "versions": versions,
            "features": features or sorted(history["drift"]["series"]),
            **history,
        }

    def feature(self, model: str, name: str) -> dict[str, Any]:
        live = self.source.feature(model, name)
        version = live.get("version") or self._registry().get(model, {}).get("champion", {}).get(
            "version"
        )
        if version is None:
            raise UnknownModelError(f"no served or champion version of {model!r} to compare with")
        try:
            reference = self.registry.reference(model, int(version))
        except (RegistryError, ValueError) as e:
            raise UnknownModelError(f"no training reference for {model} v{version}: {e}") from e
        profile = next((f for f in reference.features if f.name == name), None)
        if profile is None and reference.prediction is not None and name == "prediction":
            profile = reference.prediction
        if profile is None:
            raise UnknownModelError(f"{model} v{version} has no feature named {name!r}")
        counts = live.get("counts")
        by_category = live.get("category_counts")
        if counts is None and by_category and profile.kind != "numeric":
            # Prometheus' per-category counters, in the reference's bucket order (unknown last).
            counts = [by_category.get(c, 0.0) for c in profile.categories]
            counts += [by_category.get(OTHER_CATEGORY, 0.0), live.get("missing") or 0.0]
        total = sum(counts) if counts else 0
        live_shares = [c / total for c in counts] if counts and total else None
        return {
            "model": model,
            "feature": name,
            "kind": profile.kind,
            "version": str(version),
            "bins": bin_labels(profile),
            "reference": list(profile.proportions),
            "live": live_shares,
            "rows": live.get("rows", 0),
            "latest": live.get("latest"),
            "thresholds": live.get("thresholds"),
            "psi": live.get("psi", []),
            "moments": live.get("moments"),
            **self._slices(model, int(version), profile, live_shares),
            "generated_at": time.time(),
        }

    def _slices(
        self, model: str, version: int, profile: FeatureProfile, live: list[float] | None
    ) -> dict[str, Any]:
        """The version's slice column, and its slice table when this feature is that column."""
        try:
            recorded = self.registry.slices(model, version)
        except RegistryError as e:  # the distribution is still worth showing
            return {"slice_column": None, "slices": None, "slice_error": str(e)}
        return {
            "slice_column": recorded.column if recorded else None,
            "slices": slice_table(recorded, profile, live)
            if recorded and recorded.column == profile.name
            else None,
            "slice_error": None,
        }


def slice_table(
    recorded: SliceMetrics, profile: FeatureProfile, live: list[float] | None
) -> dict[str, Any]:
    """Each slice's holdout metrics beside its share of the training reference and of the live
    window: the shares of the profile's bucket of that category (none for a category the
    reference does not name). Categories come in the reference's order; missing values (category
    None) last."""
    bucket = {c: i for i, c in enumerate(profile.categories)} if profile.kind != "numeric" else {}
    missing = len(profile.proportions) - 1

    def index(category: str) -> int | None:
        return missing if category == MISSING_SLICE else bucket.get(category)

    def order(category: str) -> tuple[int, str]:
        i = index(category)
        return (len(bucket) if i is None else i, category)

    rows = []
    for category in sorted(recorded.metrics, key=order):
        metrics, i = recorded.metrics[category], index(category)
        held_out = metrics.get("rows", math.nan)
        rows.append(
            {
                "category": None if category == MISSING_SLICE else category,
                "training_share": profile.proportions[i] if i is not None else None,
                "live_share": live[i] if live is not None and i is not None else None,
                "holdout_rows": int(held_out) if _finite(held_out) is not None else None,
                "metrics": {k: _finite(v) for k, v in metrics.items() if k != "rows"},
            }
        )
    return {
        "column": recorded.column,
        "task": recorded.task,
        "shown_metrics": list(recorded.shown),
        "categories": rows,
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def bin_labels(profile: Any) -> list[str]:
    """Names of a profile's buckets (`FeatureProfile.bucket_counts`): numeric `<= e0`,
    `(e0, e1]` ... `> ek`, or the categories and `other`; then `missing`."""
    if profile.kind != "numeric":
        return [*profile.categories, "other", "missing"]
    edges = [f"{e:.4g}" for e in profile.edges]
    if not edges:
        return ["all", "missing"]
    inner = [f"({a}, {b}]" for a, b in itertools.pairwise(edges)]
    return [f"<= {edges[0]}", *inner, f"> {edges[-1]}", "missing"]
