"""The dashboard's local backend: the JSON-lines logs of `mlops serve`, `mlops canary run`, the
retraining trigger and the demo (no Prometheus, no cluster).

- `monitoring*.jsonl` (the model servers' drift evaluations, with window counts and live quality,
  serving/monitoring/monitoring_log.py): drift per feature and quality over time;
- every other `*.jsonl` but the prediction logs: decisions (`canary_decision` lines of the rollout
  loop, `retraining_*` and `drift_*` lines of the trigger).

Each refresh reads only what was appended since the last one (`TailedLogs`); the state kept is
compact (a bounded series per model), so a poll costs little whatever the logs' size.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_control.dashboard.source import FINAL_ACTIONS, HISTORY_POINTS, check_points, unix
from mlops_control.dashboard.tailed_logs import TailedLogs

MONITORING_PATTERN = "monitoring*.jsonl"
DECISION_EVENTS = ("canary_decision",)
RETRAINING_EVENTS = (
    "retraining_triggered",
    "retraining_completed",
    "retraining_launch_failed",
    "alert_triggered_retraining",
)


def _series() -> deque[Any]:
    return deque(maxlen=HISTORY_POINTS)


@dataclass
class _ModelState:
    drift: deque[dict[str, Any]] = field(default_factory=_series)
    quality: dict[str, deque[list[Any]]] = field(default_factory=lambda: defaultdict(_series))
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> last evaluation
    decisions: deque[dict[str, Any]] = field(default_factory=_series)
    retraining: deque[dict[str, Any]] = field(default_factory=_series)
    last_decision: dict[str, Any] | None = None


class LocalSource:
    kind = "local"

    def __init__(self, log_dirs: Iterable[str | Path]) -> None:
        self.log_dirs = [Path(d) for d in log_dirs]
        self._monitoring = TailedLogs(self.log_dirs, [MONITORING_PATTERN])
        self._decisions = TailedLogs(self.log_dirs, ["*.jsonl"])
        self._models: dict[str, _ModelState] = defaultdict(_ModelState)
        self._lock = threading.Lock()

    # --- reading the logs ----------------------------------------------------------------------
    def refresh(self) -> None:
        with self._lock:
            for doc in self._monitoring.new_lines():
                if doc.get("event") == "drift_evaluated" and doc.get("model"):
                    self._add_evaluation(doc)
            for doc in self._decisions.new_lines():
                if doc.get("event") != "drift_evaluated" and doc.get("model"):
                    self._add_decision(doc)

    def _add_evaluation(self, doc: dict[str, Any]) -> None:
        state, at, version = self._models[doc["model"]], float(doc["at"]), str(doc["version"])
        features = doc.get("features") or {}
        state.drift.append(
            {
                "at": at,
                "version": version,
                "share_drifted": doc.get("share_drifted"),
                "psi": {f: v.get("psi") for f, v in features.items()},
                "drifted": sorted(f for f, v in features.items() if v.get("drifted")),
            }
        )
        state.latest[version] = doc
        quality = doc.get("quality") or {}
        if quality.get("accuracy") is not None or quality.get("rmse") is not None:
            state.quality[version].append(
                [at, quality.get("accuracy"), quality.get("rmse"), quality.get("labelled")]
            )

    def _add_decision(self, doc: dict[str, Any]) -> None:
        # Files are matched by one broad pattern; the prediction and monitoring logs hold no
        # decisions (a prediction line has no `event`).
        event, at = doc.get("event"), unix(doc.get("at"))
        if event is None or at is None:
            return
        state = self._models[doc["model"]]
        if event in DECISION_EVENTS:
            d = doc.get("decision") or {}
            window = doc.get("window") or {}
            state.decisions.append(
                {
                    "at": at,
                    "stable": str(doc.get("stable_version")),
                    "canary": str(doc.get("canary_version")),
                    "action": d.get("action"),
                    "reason": d.get("reason"),
                    "canary_percent": d.get("canary_percent"),
                    "previous_percent": d.get("previous_percent"),
                    "checks": d.get("checks") or [],
                    "requests": {
                        "stable": (window.get("stable") or {}).get("requests"),
                        "canary": (window.get("canary") or {}).get("requests"),
                    },
                }
            )
            _set_last(state, {"at": at, "kind": "rollout", "action": d.get("action"),
                              "reason": d.get("reason")})  # fmt: skip
        elif event in RETRAINING_EVENTS:
            state.retraining.append(
                {
                    "at": at,
                    "event": event,
                    "trigger_id": doc.get("trigger_id"),
                    "reason": doc.get("reason") or doc.get("reasons"),
                    "run_id": doc.get("run_id"),
                    "run_name": doc.get("run_name"),
                    "runner": doc.get("run_runner"),
                    "version": doc.get("version"),
                }
            )
            _set_last(state, {"at": at, "kind": "retraining", "action": event,
                              "reason": doc.get("reason") or doc.get("reasons")})  # fmt: skip

    # --- answering -----------------------------------------------------------------------------
    def live(self) -> dict[str, dict[str, Any]]:
        self.refresh()
        with self._lock:
            return {model: self._live_of(state) for model, state in self._models.items()}

    def _live_of(self, state: _ModelState) -> dict[str, Any]:
        drift = state.drift[-1] if state.drift else None
        quality = None
        for version, points in state.quality.items():
            if points and (quality is None or points[-1][0] > quality["at"]):
                at, acc, rmse, labelled = points[-1]
                quality = {
                    "at": at,
                    "version": version,
                    "accuracy": acc,
                    "rmse": rmse,
                    "labelled": labelled,
                }
        return {
            "drift": drift and {k: drift[k] for k in ("at", "version", "share_drifted", "drifted")},
            "quality": quality,
            "rollout": _rollout_state(_by_time(state.decisions)),
            "last_decision": state.last_decision,
        }

    def history(self, model: str) -> dict[str, Any]:
        self.refresh()
        with self._lock:
            state = self._models.get(model) or _ModelState()
            drift = list(state.drift)
            thresholds = None
            if drift:
                thresholds = state.latest.get(drift[-1]["version"], {}).get("thresholds")
            features: dict[str, list[list[Any]]] = defaultdict(list)
            for point in drift:
                for name, value in point["psi"].items():
                    features[name].append([point["at"], value])
            decisions = _by_time(state.decisions)
            return {
                "drift": {
                    "version": drift[-1]["version"] if drift else None,
                    "thresholds": thresholds,
                    "series": dict(features),
                    "share_drifted": [[p["at"], p["share_drifted"]] for p in drift],
                },
                "quality": {v: [p[:3] for p in pts] for v, pts in state.quality.items()},
                "rollout": _rollout_history(decisions),
                "retraining": list(state.retraining),
            }

    def feature(self, model: str, name: str) -> dict[str, Any]:
        self.refresh()
        with self._lock:
            state = self._models.get(model) or _ModelState()
            psi = [[p["at"], p["psi"].get(name)] for p in state.drift if name in p["psi"]]
            latest = state.latest.get(state.drift[-1]["version"]) if state.drift else None
        if latest is None:
            return {"version": None, "counts": None, "rows": 0, "latest": None, "psi": psi}
        return {
            "version": str(latest["version"]),
            "counts": (latest.get("counts") or {}).get(name),
            "rows": latest.get("rows", 0),
            "latest": (latest.get("features") or {}).get(name),
            "thresholds": latest.get("thresholds"),
            "psi": psi,
        }


def _set_last(state: _ModelState, decision: dict[str, Any]) -> None:
    """Logs are read file by file, not in time order: keep the newest decision."""
    if state.last_decision is None or decision["at"] >= state.last_decision["at"]:
        state.last_decision = decision


def _by_time(decisions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # Several logs (the demo's, `mlops canary run`'s) may hold one model's decisions.
    return sorted(decisions, key=lambda d: d["at"])


def _current(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisions of the newest rollout (the last run of one stable/canary pair)."""
    if not decisions:
        return []
    pair = (decisions[-1]["stable"], decisions[-1]["canary"])
    start = len(decisions) - 1
    while start > 0:
        before = decisions[start - 1]
        if (before["stable"], before["canary"]) != pair or before["action"] in FINAL_ACTIONS:
            break  # another rollout, or an earlier one of the same pair that ended there
        start -= 1
    return decisions[start:]


def _rollout_state(decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    current = _current(decisions)
    if not current:
        return None
    last = current[-1]
    return {
        "in_progress": last["action"] not in FINAL_ACTIONS,
        "stable": last["stable"],
        "canary": last["canary"],
        "canary_percent": last["canary_percent"],
        "outcome": last["action"] if last["action"] in FINAL_ACTIONS else None,
    }


def _rollout_history(decisions: list[dict[str, Any]]) -> dict[str, Any] | None:
    current = _current(decisions)
    state = _rollout_state(decisions)
    if state is None:
        return None
    share: dict[str, list[list[Any]]] = {state["stable"]: [], state["canary"]: []}
    checks: dict[str, list[list[Any]]] = defaultdict(list)
    for d in current:
        served = {k: v or 0 for k, v in d["requests"].items()}
        total = served["stable"] + served["canary"]
        if total:
            share[state["stable"]].append([d["at"], served["stable"] / total])
            share[state["canary"]].append([d["at"], served["canary"] / total])
        for name, point in check_points(d["at"], d["checks"]).items():
            checks[name].append(point)
    return state | {
        "share": share,
        "checks": dict(checks),
        "decisions": [
            {k: d[k] for k in ("at", "action", "reason", "canary_percent", "previous_percent")}
            for d in current
        ],
    }
