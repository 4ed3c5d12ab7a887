"""Answer "where did this prediction come from, and what happened next?" for one request id.

Joins three records: the prediction log (request id -> model, version, serving revision, time),
the registry's lineage (version -> run -> data fingerprint and source, metrics, code version) and
the decision logs (trigger and rollout events, JSON lines). The answer says:

- which data, which run, which registered version and which InferenceService revision served it;
- which trigger (and the drift behind it) started the run that made that version, if one did;
- which alert or drift started the *next* run after the prediction, and which version that made;
- the rollout decisions that involved the version.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import read_json_lines
from mlops_core.registry import ModelRegistry, RegistryError


class AuditError(MlopsError):
    """The request id cannot be traced."""


def _ts(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _decision_logs(audit_dir: Path) -> list[dict[str, Any]]:
    """Every decision event under the audit dir (trigger log and rollout logs), oldest first."""
    events = []
    for path in sorted(audit_dir.rglob("*.jsonl")):
        if path.name.startswith(("predictions", "monitoring")):  # not decisions
            continue
        for doc in read_json_lines(path):
            doc.setdefault("source", str(path))
            if "at" in doc:
                events.append(doc)
    return sorted(events, key=lambda e: _ts(e["at"]))


def find_prediction(request_id: str, audit_dir: Path) -> dict[str, Any] | None:
    for path in sorted(audit_dir.rglob("predictions*.jsonl")):
        for doc in read_json_lines(path):
            if doc.get("request_id") == request_id:
                return doc | {"log": str(path)}
    return None


def _mentions_version(event: dict[str, Any], version: str) -> bool:
    keys = ("version", "canary_version", "stable_version")
    return any(str(event.get(k)) == version for k in keys)


def _first(events: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The oldest event whose fields equal `match` (an `event` given as a tuple matches any)."""
    for e in events:
        if all(e.get(k) in v if isinstance(v, tuple) else e.get(k) == v for k, v in match.items()):
            return e
    return None


def _made_by(events: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    """The run that made this version, and the trigger behind it."""
    run = next(
        (
            e
            for e in events
            if e.get("event") == "retraining_completed" and str(e.get("version")) == version
        ),
        None,
    )
    if run is None:
        return None
    trigger = _first(events, event="retraining_triggered", trigger_id=run.get("trigger_id"))
    return {"trigger": trigger, "run": run}


def _next_run(events: list[dict[str, Any]], model: str, at: float) -> dict[str, Any] | None:
    """The first retraining trigger (drift or alert) for the model after the prediction."""
    later = [e for e in events if _ts(e["at"]) >= at]
    trigger = _first(
        later, event=("retraining_triggered", "alert_triggered_retraining"), model=model
    )
    if trigger is None:
        return None
    done = _first(events, event="retraining_completed", trigger_id=trigger.get("trigger_id"))
    return {"trigger": trigger, "produced_version": done.get("version") if done else None}


def _rollout_steps(events: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """Every rollout decision that names this version as stable or canary."""
    steps = []
    for e in events:
        if not _mentions_version(e, version):
            continue
        if "decision" not in e and e.get("event") != "rollout_finished":
            continue
        decision = e.get("decision") or {}
        steps.append(
            {
                "at": e["at"],
                "stable_version": e.get("stable_version"),
                "canary_version": e.get("canary_version"),
                "action": decision.get("action", e.get("action")),
                "canary_percent": decision.get("canary_percent"),
                "reason": decision.get("reason", e.get("reason")),
            }
        )
    return steps


_VERSION_FIELDS = (
    "run_id",
    "data_fingerprint",
    "data_source",
    "code_version",
    "created_at",
    "metrics",
    "artifact_sha256",
    "feature_lineage",
)


def audit_request(request_id: str, *, audit_dir: str | Path, registry_uri: str) -> dict[str, Any]:
    """The whole trail of one prediction as a JSON-able dict."""
    audit_dir = Path(audit_dir)
    prediction = find_prediction(request_id, audit_dir)
    if prediction is None:
        raise AuditError(
            f"request id {request_id!r} is not in the prediction logs under {audit_dir} "
            "(predictions*.jsonl); check --audit-dir (env MLOPS_AUDIT_DIR) of the server that "
            "answered it"
        )
    model, version = prediction["model"], str(prediction["version"])
    try:
        record = ModelRegistry(registry_uri).get(model, int(version)).to_dict()
    except (RegistryError, ValueError) as e:
        raise AuditError(
            f"{model} v{version} served {request_id!r} but the registry says: {e}"
        ) from e
    events = _decision_logs(audit_dir)
    return {
        "request_id": request_id,
        "served": {
            "model": model,
            "version": int(version),
            "revision": prediction.get("revision"),
            "at": prediction["at"],
            "rows": prediction.get("rows"),
            "log": prediction["log"],
            "features_used": prediction.get("features_used"),
        },
        "version": {k: record.get(k) for k in _VERSION_FIELDS},
        "version_made_by": _made_by(events, version),
        "next_run": _next_run(events, model, float(prediction["at"])),
        "rollout": _rollout_steps(events, version),
    }
