"""The records the control plane keeps on an InferenceService, each in its own annotation as JSON
and read back into a dataclass (never searched as text):

- `RolloutRecord` (mlops.platform/rollout-state): a running rollout's progress, so a controller
  restarted mid-way resumes at the same step with the evidence so far, and, once decided, the
  stage of its promotion or rollback (components/isvc_release.py) so a restart resumes that too;
- `DecisionRecord` (mlops.platform/last-decision): the rollout's last decision, in short;
- `RetrainingRecord` (mlops.platform/last-retraining): the retraining trigger's last firing, which
  keeps its cool-down across restarts. The trigger never writes the rollout's annotations.

An unreadable record is logged and read as absent: the controller then starts that bookkeeping
afresh rather than stopping on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from components import isvc_metadata as names
from components.isvc_release import ReleaseStage
from components.isvc_traffic import annotations_of
from mlops_control.rollout.analysis import CanaryDecision
from mlops_control.rollout.step import RolloutProgress

logger = logging.getLogger(__name__)

_R = TypeVar("_R")


def _read(isvc: dict[str, Any], key: str, parse: Callable[[dict[str, Any]], _R]) -> _R | None:
    raw = annotations_of(isvc).get(key)
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise TypeError(f"a JSON object, got {type(doc).__name__}")
        return parse(doc)
    except (ValueError, KeyError, TypeError) as e:
        meta = isvc.get("metadata", {})
        logger.warning(
            "%s/%s: ignoring an unreadable %s: %s", meta.get("namespace"), meta.get("name"), key, e
        )
        return None


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


@dataclass(frozen=True)
class RolloutRecord:
    canary_version: str
    stable_version: str
    progress: RolloutProgress
    last_analysis_at: float
    # Set once promotion or rollback is decided: the stage whose write has been made, when it
    # was made, and the decision's words for the Event sent when the last stage is served.
    release: ReleaseStage | None = None
    release_since: float = 0.0
    release_message: str = ""
    manual: bool = False

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "canary_version": self.canary_version,
            "stable_version": self.stable_version,
            **self.progress.to_dict(),
            "last_analysis_at": self.last_analysis_at,
        }
        if self.release is not None:
            doc["release"] = {
                **self.release.to_dict(),
                "since": self.release_since,
                "message": self.release_message[:1024],
                "manual": self.manual,
            }
        return _json(doc)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RolloutRecord:
        release = doc.get("release")
        return cls(
            canary_version=str(doc["canary_version"]),
            stable_version=str(doc["stable_version"]),
            progress=RolloutProgress.from_dict(doc),
            last_analysis_at=float(doc["last_analysis_at"]),
            release=None if release is None else ReleaseStage.from_dict(release),
            release_since=0.0 if release is None else float(release.get("since", 0.0)),
            release_message="" if release is None else str(release.get("message", "")),
            manual=False if release is None else bool(release.get("manual", False)),
        )

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> RolloutRecord | None:
        return _read(isvc, names.ROLLOUT_STATE, cls.from_dict)


@dataclass(frozen=True)
class DecisionRecord:
    action: str  # a decision's action, or start / failed for what is not an analysis
    reason: str
    percent: int | None = None
    previous_percent: int | None = None
    checks: dict[str, str] = field(default_factory=dict)
    manual: bool = False
    at: str = ""

    @classmethod
    def of_decision(cls, decision: CanaryDecision) -> DecisionRecord:
        return cls(
            action=decision.action,
            reason=decision.reason[:300],
            percent=decision.canary_percent,
            previous_percent=decision.previous_percent,
            checks={c.name: c.status for c in decision.checks},
            at=_now(),
        )

    @classmethod
    def of_event(cls, action: str, reason: str, *, manual: bool = False) -> DecisionRecord:
        return cls(action=action, reason=reason[:300], manual=manual, at=_now())

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["from"] = doc.pop("previous_percent")  # the share before: "from" in the annotation
        return doc

    def to_json(self) -> str:
        return _json(self.to_dict())

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DecisionRecord:
        return cls(
            action=str(doc["action"]),
            reason=str(doc.get("reason", "")),
            percent=None if doc.get("percent") is None else int(doc["percent"]),
            previous_percent=None if doc.get("from") is None else int(doc["from"]),
            checks={str(k): str(v) for k, v in (doc.get("checks") or {}).items()},
            manual=bool(doc.get("manual", False)),
            at=str(doc.get("at", "")),
        )

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> DecisionRecord | None:
        return _read(isvc, names.LAST_DECISION, cls.from_dict)


@dataclass(frozen=True)
class RetrainingRecord:
    at: float  # when the trigger fired (the cool-down counts from here)
    run_id: str
    trigger_id: str

    def to_json(self) -> str:
        return _json({"at": self.at, "run_id": self.run_id, "id": self.trigger_id})

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RetrainingRecord:
        return cls(at=float(doc["at"]), run_id=str(doc["run_id"]), trigger_id=str(doc["id"]))

    @classmethod
    def of(cls, isvc: dict[str, Any]) -> RetrainingRecord | None:
        return _read(isvc, names.LAST_RETRAINING, cls.from_dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
