"""The InferenceService merge patches a serverless-mode canary rollout applies. Pure functions of
the object as read from the API, so their JSON shapes are checked against the kserve SDK's model.

KServe serverless mode keeps the last revision that took 100% as the stable one. A rollout:
  start     spec.predictor -> the new model (STORAGE_URI), canaryTrafficPercent = first step
  step      canaryTrafficPercent = next step
  promote   canaryTrafficPercent removed (null): the latest revision takes 100%
  rollback  canaryTrafficPercent = 0: every request back to the previous revision
Every patch carries metadata.resourceVersion, so a concurrent writer makes it fail with 409 and
the actuator re-reads and retries instead of overwriting.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from components.inference_service import MODEL_VERSION_ANNOTATION, PREDICTOR_CONTAINER
from mlops_core.errors import MlopsError

ANNOTATION_PREFIX = "mlops.platform/"
STABLE_VERSION = ANNOTATION_PREFIX + "stable-version"
STABLE_STORAGE_URI = ANNOTATION_PREFIX + "stable-storage-uri"
CANARY_VERSION = ANNOTATION_PREFIX + "canary-version"
LAST_DECISION = ANNOTATION_PREFIX + "last-decision"


class PatchError(MlopsError):
    """The InferenceService is not in a state this change applies to."""


def annotations(isvc: dict[str, Any]) -> dict[str, str]:
    return isvc.get("metadata", {}).get("annotations") or {}


def predictor_of(isvc: dict[str, Any]) -> dict[str, Any]:
    predictor = isvc.get("spec", {}).get("predictor")
    if not isinstance(predictor, dict):
        raise PatchError("the InferenceService has no spec.predictor")
    return predictor


def canary_percent_of(isvc: dict[str, Any]) -> int | None:
    return predictor_of(isvc).get("canaryTrafficPercent")


def canary_version_of(isvc: dict[str, Any]) -> str | None:
    """The version running as a canary: recorded by `start`, or, for a canary the pipeline's deploy
    step started (it sets the model-version annotation and canaryTrafficPercent, not ours), the
    model-version annotation while a positive canaryTrafficPercent is set."""
    ann = annotations(isvc)
    if ann.get(CANARY_VERSION):
        return ann[CANARY_VERSION]
    served = ann.get(MODEL_VERSION_ANNOTATION)
    if canary_percent_of(isvc) not in (None, 0) and served and served != ann.get(STABLE_VERSION):
        return served
    return None


def storage_uri_in(predictor: dict[str, Any]) -> str | None:
    """Where the predictor's model comes from: STORAGE_URI of our container, or model.storageUri."""
    for c in predictor.get("containers") or []:
        if c.get("name") == PREDICTOR_CONTAINER:
            for env in c.get("env") or []:
                if env.get("name") == "STORAGE_URI":
                    return env.get("value")
    model = predictor.get("model") or {}
    return model.get("storageUri")


def _with_storage_uri(predictor: dict[str, Any], uri: str) -> dict[str, Any]:
    """The predictor fields to patch so that it serves `uri` (lists are replaced whole)."""
    containers = copy.deepcopy(predictor.get("containers") or [])
    for c in containers:
        if c.get("name") == PREDICTOR_CONTAINER:
            env = [e for e in c.get("env") or [] if e.get("name") != "STORAGE_URI"]
            c["env"] = [{"name": "STORAGE_URI", "value": uri}, *env]
            return {"containers": containers}
    if "model" in predictor:
        return {"model": {"storageUri": uri}}
    raise PatchError(
        f"the predictor has neither a {PREDICTOR_CONTAINER!r} container nor a model spec; "
        "cannot point it at a new model"
    )


def _meta(isvc: dict[str, Any], annotations_patch: dict[str, str | None]) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": isvc["metadata"]["resourceVersion"]}
    if annotations_patch:
        meta["annotations"] = annotations_patch
    return meta


def start_patch(
    isvc: dict[str, Any], version: str, storage_uri: str, percent: int
) -> dict[str, Any]:
    predictor = predictor_of(isvc)
    ann = annotations(isvc)
    running = canary_version_of(isvc)
    if running and canary_percent_of(isvc) not in (None, 0):
        raise PatchError(
            f"version {running} is already a canary at {canary_percent_of(isvc)}%; "
            "promote or roll it back first (`mlops canary promote|rollback`)"
        )
    current_uri = storage_uri_in(predictor)
    rolled_back = canary_percent_of(isvc) == 0
    # After a rollback the spec still names the rolled-back model; the stable one is recorded.
    stable_uri = ann.get(STABLE_STORAGE_URI) if rolled_back else current_uri
    stable_version = ann.get(STABLE_VERSION) if rolled_back else ann.get(MODEL_VERSION_ANNOTATION)
    if storage_uri == stable_uri:
        raise PatchError(f"{storage_uri} is already the stable model")
    if not 1 <= percent <= 99:
        raise PatchError(f"a canary's first step must be 1..99%, got {percent}")
    return {
        "metadata": _meta(
            isvc,
            {
                MODEL_VERSION_ANNOTATION: version,
                STABLE_VERSION: stable_version,
                STABLE_STORAGE_URI: stable_uri,
                CANARY_VERSION: version,
            },
        ),
        "spec": {
            "predictor": {
                **_with_storage_uri(predictor, storage_uri),
                "canaryTrafficPercent": percent,
            }
        },
    }


def _require_canary(isvc: dict[str, Any]) -> str:
    version = canary_version_of(isvc)
    if not version or canary_percent_of(isvc) is None:
        raise PatchError(
            "no canary is in progress on this InferenceService (no canaryTrafficPercent and "
            f"{CANARY_VERSION} annotation); start one with `mlops canary start`"
        )
    return version


def percent_patch(isvc: dict[str, Any], percent: int) -> dict[str, Any]:
    _require_canary(isvc)
    if not 0 <= percent <= 100:
        raise PatchError(f"canary percent must be 0..100, got {percent}")
    return {"metadata": _meta(isvc, {}), "spec": {"predictor": {"canaryTrafficPercent": percent}}}


def promote_patch(isvc: dict[str, Any]) -> dict[str, Any]:
    version = _require_canary(isvc)
    return {
        "metadata": _meta(
            isvc,
            {
                STABLE_VERSION: version,
                STABLE_STORAGE_URI: storage_uri_in(predictor_of(isvc)),
                CANARY_VERSION: None,
            },
        ),
        "spec": {"predictor": {"canaryTrafficPercent": None}},
    }


def rollback_patch(isvc: dict[str, Any]) -> dict[str, Any]:
    version = _require_canary(isvc)
    return {
        "metadata": _meta(
            isvc, {CANARY_VERSION: None, ANNOTATION_PREFIX + "rolled-back-version": version}
        ),
        "spec": {"predictor": {"canaryTrafficPercent": 0}},
    }


def decision_annotation_patch(isvc: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": _meta(isvc, {LAST_DECISION: json.dumps(decision, separators=(",", ":"))})}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server applies for application/merge-patch+json)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def observed_canary_percent(isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
    """The latest revision's share in status.components.predictor.traffic (None: no status yet)."""
    traffic = isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic") or []
    if not traffic:
        return None, []
    latest = sum(int(t.get("percent") or 0) for t in traffic if t.get("latestRevision"))
    return latest, traffic


# --- strategies -------------------------------------------------------------------------------


class ServerlessCanary:
    """KServe serverless mode (Knative): `spec.predictor.canaryTrafficPercent`. The default."""

    name = "serverless"

    @staticmethod
    def start_patch(isvc: dict[str, Any], version: str, uri: str, percent: int) -> dict[str, Any]:
        return start_patch(isvc, version, uri, percent)

    percent_patch = staticmethod(percent_patch)
    promote_patch = staticmethod(promote_patch)
    rollback_patch = staticmethod(rollback_patch)

    @staticmethod
    def canary_percent(isvc: dict[str, Any]) -> int | None:
        return canary_percent_of(isvc)

    @staticmethod
    def canary_version(isvc: dict[str, Any]) -> str | None:
        return canary_version_of(isvc)

    @staticmethod
    def observed(isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        return observed_canary_percent(isvc)

    @staticmethod
    def confirmed(isvc: dict[str, Any], want: int | None) -> bool:
        """`want` None is a promotion: the latest revision at 100%."""
        return observed_canary_percent(isvc)[0] == (100 if want is None else want)


class StandardCanary:
    """KServe standard mode, from 0.20 on: `spec.canary`, a list of `{predictor, trafficPercent}`
    (V1beta1CanarySpec). Start adds the entry; promote makes its predictor the main one and removes
    the entry; rollback removes the entry. Confirmed from `status.canaryStatuses`."""

    name = "standard"

    @staticmethod
    def _entry(isvc: dict[str, Any]) -> dict[str, Any] | None:
        entries = isvc.get("spec", {}).get("canary") or []
        return entries[0] if entries else None

    @classmethod
    def start_patch(
        cls, isvc: dict[str, Any], version: str, uri: str, percent: int
    ) -> dict[str, Any]:
        if cls._entry(isvc) is not None:
            raise PatchError(
                f"version {annotations(isvc).get(CANARY_VERSION, '?')} is already a canary in "
                "spec.canary; promote or roll it back first"
            )
        if not 1 <= percent <= 99:
            raise PatchError(f"a canary's first step must be 1..99%, got {percent}")
        predictor = predictor_of(isvc)
        stable_uri = storage_uri_in(predictor)
        if uri == stable_uri:
            raise PatchError(f"{uri} is already the stable model")
        canary_predictor = merge_patch(predictor, _with_storage_uri(predictor, uri))
        canary_predictor.pop("canaryTrafficPercent", None)
        return {
            "metadata": _meta(
                isvc,
                {
                    STABLE_VERSION: annotations(isvc).get(MODEL_VERSION_ANNOTATION),
                    STABLE_STORAGE_URI: stable_uri,
                    CANARY_VERSION: version,
                },
            ),
            "spec": {"canary": [{"predictor": canary_predictor, "trafficPercent": percent}]},
        }

    @classmethod
    def _require(cls, isvc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        entry = cls._entry(isvc)
        version = annotations(isvc).get(CANARY_VERSION)
        if entry is None or not version:
            raise PatchError(
                "no canary is in progress on this InferenceService (spec.canary is empty); "
                "start one with `mlops canary start`"
            )
        return version, entry

    @classmethod
    def percent_patch(cls, isvc: dict[str, Any], percent: int) -> dict[str, Any]:
        _, entry = cls._require(isvc)
        if not 0 <= percent <= 100:
            raise PatchError(f"canary percent must be 0..100, got {percent}")
        return {
            "metadata": _meta(isvc, {}),
            "spec": {"canary": [{**entry, "trafficPercent": percent}]},
        }

    @classmethod
    def promote_patch(cls, isvc: dict[str, Any]) -> dict[str, Any]:
        version, entry = cls._require(isvc)
        # The whole predictor is replaced: nulls for the old keys the canary's predictor lacks.
        new = dict.fromkeys(predictor_of(isvc)) | entry["predictor"]
        return {
            "metadata": _meta(
                isvc,
                {
                    MODEL_VERSION_ANNOTATION: version,
                    STABLE_VERSION: version,
                    STABLE_STORAGE_URI: storage_uri_in(entry["predictor"]),
                    CANARY_VERSION: None,
                },
            ),
            "spec": {"predictor": new, "canary": None},
        }

    @classmethod
    def rollback_patch(cls, isvc: dict[str, Any]) -> dict[str, Any]:
        version, _ = cls._require(isvc)
        return {
            "metadata": _meta(
                isvc, {CANARY_VERSION: None, ANNOTATION_PREFIX + "rolled-back-version": version}
            ),
            "spec": {"canary": None},
        }

    @classmethod
    def canary_percent(cls, isvc: dict[str, Any]) -> int | None:
        entry = cls._entry(isvc)
        return None if entry is None else entry.get("trafficPercent")

    @classmethod
    def canary_version(cls, isvc: dict[str, Any]) -> str | None:
        return annotations(isvc).get(CANARY_VERSION) if cls._entry(isvc) else None

    @staticmethod
    def observed(isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        statuses = isvc.get("status", {}).get("canaryStatuses") or []
        if not statuses:
            return None, []
        return sum(int(s.get("trafficPercent") or 0) for s in statuses if s.get("ready")), statuses

    @classmethod
    def confirmed(cls, isvc: dict[str, Any], want: int | None) -> bool:
        observed, statuses = cls.observed(isvc)
        if want is None or want == 0:  # promoted or rolled back: no canary left in the status
            return not statuses
        return observed == want


STRATEGIES: dict[str, type[ServerlessCanary] | type[StandardCanary]] = {
    "serverless": ServerlessCanary,
    "standard": StandardCanary,
}
