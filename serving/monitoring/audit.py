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
        if path.name.startswith("predictions"):
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
    at = float(prediction["at"])

    # The run that made this version, and the trigger behind it.
    made_by = next(
        (
            e
            for e in events
            if e.get("event") == "retraining_completed" and str(e.get("version")) == version
        ),
        None,
    )
    started_by = None
    if made_by is not None:
        started_by = next(
            (
                e
                for e in events
                if e.get("event") == "retraining_triggered"
                and e.get("trigger_id") == made_by.get("trigger_id")
            ),
            None,
        )
    # The next run after this prediction: the first trigger (drift or alert) for the model later.
    next_trigger = next(
        (
            e
            for e in events
            if e.get("event") in ("retraining_triggered", "alert_triggered_retraining")
            and e.get("model") == model
            and _ts(e["at"]) >= at
        ),
        None,
    )
    next_version = None
    if next_trigger is not None:
        done = next(
            (
                e
                for e in events
                if e.get("event") == "retraining_completed"
                and e.get("trigger_id") == next_trigger.get("trigger_id")
            ),
            None,
        )
        next_version = done.get("version") if done else None
    rollout = [
        {
            "at": e["at"],
            "stable_version": e.get("stable_version"),
            "canary_version": e.get("canary_version"),
            "action": (e.get("decision") or {}).get("action", e.get("action")),
            "canary_percent": (e.get("decision") or {}).get("canary_percent"),
            "reason": (e.get("decision") or {}).get("reason", e.get("reason")),
        }
        for e in events
        if _mentions_version(e, version)
        and ("decision" in e or e.get("event") == "rollout_finished")
    ]
    return {
        "request_id": request_id,
        "served": {
            "model": model,
            "version": int(version),
            "revision": prediction.get("revision"),
            "at": prediction["at"],
            "rows": prediction.get("rows"),
            "log": prediction["log"],
        },
        "version": {
            "run_id": record.get("run_id"),
            "data_fingerprint": record.get("data_fingerprint"),
            "data_source": record.get("data_source"),
            "code_version": record.get("code_version"),
            "created_at": record.get("created_at"),
            "metrics": record.get("metrics"),
            "artifact_sha256": record.get("artifact_sha256"),
        },
        "version_made_by": {
            "trigger": started_by,
            "run": made_by,
        }
        if made_by
        else None,
        "next_run": {"trigger": next_trigger, "produced_version": next_version}
        if next_trigger
        else None,
        "rollout": rollout,
    }
