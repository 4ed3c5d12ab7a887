"""The one writer of an InferenceService's traffic state: who is stable, who is the canary, and
what share the canary gets. Used by the pipeline's deploy step and by the canary actuator (the
CLI, the demo's cluster path and the in-cluster controller), so both record the same annotations.

State kept on the InferenceService (so any process can resume a rollout from it):
  mlops.platform/stable-version, stable-storage-uri   what a rollback returns to
  mlops.platform/canary-version                        the version under analysis
  mlops.platform/rolled-back-version, last-decision    what happened last

How traffic is split depends on KServe's deployment mode, read from the object itself
(`serving.kserve.io/deploymentMode`), so switching the builder's mode switches the writer:
  Serverless (Knative)  spec.predictor.canaryTrafficPercent on a new revision; promote removes it,
                        rollback sets it to 0 (the last ready revision takes everything).
  Standard (0.21)       spec.canary = [{predictor: {name, ...}, trafficPercent}] (CanarySpec in
                        pkg/apis/serving/v1beta1/inference_service.go); promote retargets
                        spec.predictor to the canary's named predictor and removes the entry,
                        rollback removes the entry.
Every patch carries metadata.resourceVersion: a concurrent writer makes it fail with 409 and the
writer re-reads and rebuilds the patch instead of overwriting.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    GROUP,
    MODEL_VERSION_ANNOTATION,
    PLURAL,
    PREDICTOR_CONTAINER,
    VERSION,
)
from components.isvc_metadata import (
    CANARY_VERSION,
    LAST_DECISION,
    ROLLED_BACK_VERSION,
    STABLE_STORAGE_URI,
    STABLE_VERSION,
)
from mlops_core.errors import ConflictError, MlopsError, NotFoundError

logger = logging.getLogger(__name__)


# Scaling fields a Standard-mode canary may not set (inference_service_validation.go,
# validateCanarySpecs: "canary uses fixed replicas"); they stay with the stable predictor.
_STABLE_ONLY_FIELDS = ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling")


# KServe's HTTPRoute for a Standard-mode predictor (httproute_reconciler.go: the route is named
# constants.PredictorServiceName(isvc.Name), its backends PredictorServiceName(isvc.Name,
# predictor.name)).
ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"


def route_name(isvc_name: str) -> str:
    return f"{isvc_name}-predictor"


def predictor_service(isvc_name: str, predictor_name: str | None) -> str:
    """The Service KServe makes for a named predictor (constants.PredictorServiceName)."""
    return f"{isvc_name}-{predictor_name}-predictor" if predictor_name else route_name(isvc_name)


class TrafficStateError(ConflictError):
    """The InferenceService is not in a state this traffic change applies to."""


class InferenceServiceMissing(NotFoundError):
    """The InferenceService to change does not exist."""


class InferenceServiceWriteError(MlopsError):
    """The Kubernetes API refused or could not take a read or a write."""


# --- reading the state -------------------------------------------------------------------------


def annotations_of(isvc: dict[str, Any]) -> dict[str, str]:
    return isvc.get("metadata", {}).get("annotations") or {}


def predictor_of(isvc: dict[str, Any]) -> dict[str, Any]:
    predictor = isvc.get("spec", {}).get("predictor")
    if not isinstance(predictor, dict):
        raise TrafficStateError("the InferenceService has no spec.predictor")
    return predictor


def storage_uri_in(predictor: dict[str, Any]) -> str | None:
    """Where a predictor's model comes from: STORAGE_URI of our container, or model.storageUri."""
    for c in predictor.get("containers") or []:
        if c.get("name") == PREDICTOR_CONTAINER:
            for env in c.get("env") or []:
                if env.get("name") == "STORAGE_URI":
                    return env.get("value")
    return (predictor.get("model") or {}).get("storageUri")


def image_in(predictor: dict[str, Any]) -> str | None:
    for c in predictor.get("containers") or []:
        if c.get("name") == PREDICTOR_CONTAINER:
            return c.get("image")
    return None


def with_storage_uri(predictor: dict[str, Any], uri: str) -> dict[str, Any]:
    """A copy of `predictor` that serves `uri` instead."""
    out = copy.deepcopy(predictor)
    for c in out.get("containers") or []:
        if c.get("name") == PREDICTOR_CONTAINER:
            env = [e for e in c.get("env") or [] if e.get("name") != "STORAGE_URI"]
            c["env"] = [{"name": "STORAGE_URI", "value": uri}, *env]
            return out
    if "model" in out:
        out["model"] = {**out["model"], "storageUri": uri}
        return out
    raise TrafficStateError(
        f"the predictor has neither a {PREDICTOR_CONTAINER!r} container nor a model spec; "
        "cannot point it at a new model"
    )


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


def _meta(isvc: dict[str, Any], annotations_patch: dict[str, str | None]) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": isvc["metadata"]["resourceVersion"]}
    if annotations_patch:
        meta["annotations"] = annotations_patch
    return meta


def _check_first_step(percent: int) -> None:
    if not 1 <= percent <= 99:
        raise TrafficStateError(f"a canary's first step must be 1..99%, got {percent}")


def initial_annotations(version: str, storage_uri: str) -> dict[str, str]:
    """What a first deployment records: this version is the stable one."""
    return {STABLE_VERSION: str(version), STABLE_STORAGE_URI: storage_uri}


def newest_predictor(isvc: dict[str, Any], mode: TrafficMode) -> dict[str, Any]:
    """The predictor most recently put out: the canary's while one runs, else the stable's."""
    if mode.name == "standard":
        entries = isvc.get("spec", {}).get("canary") or []
        if entries:
            return entries[-1]["predictor"]
    return predictor_of(isvc)


def decision_annotation_patch(isvc: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": _meta(isvc, {LAST_DECISION: json.dumps(decision, separators=(",", ":"))})}


# --- the two ways KServe splits traffic --------------------------------------------------------


class TrafficMode(Protocol):
    """How one KServe deployment mode writes and reads a canary. Pure functions of the object."""

    name: str

    def start_patch(
        self, isvc: dict[str, Any], version: str, canary_predictor: dict[str, Any], percent: int
    ) -> dict[str, Any]: ...

    def percent_patch(self, isvc: dict[str, Any], percent: int) -> dict[str, Any]: ...

    def promote_patch(self, isvc: dict[str, Any]) -> dict[str, Any]: ...

    def rollback_patch(self, isvc: dict[str, Any]) -> dict[str, Any]: ...

    def canary_percent(self, isvc: dict[str, Any]) -> int | None:
        """The canary's share in the spec (None: no canary)."""
        ...

    def canary_version(self, isvc: dict[str, Any]) -> str | None: ...

    def stable_version(self, isvc: dict[str, Any]) -> str | None: ...

    def observed(self, isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        """The canary's share the status reports, and the status entries it comes from."""
        ...

    def confirmed(self, isvc: dict[str, Any], want: int | None) -> bool:
        """Does the status show `want` (None: promoted; 0: rolled back)?"""
        ...


class ServerlessCanary:
    """KServe Serverless mode (Knative): `spec.predictor.canaryTrafficPercent`."""

    name = "serverless"

    def canary_percent(self, isvc: dict[str, Any]) -> int | None:
        return predictor_of(isvc).get("canaryTrafficPercent")

    def canary_version(self, isvc: dict[str, Any]) -> str | None:
        ann = annotations_of(isvc)
        if ann.get(CANARY_VERSION):
            return ann[CANARY_VERSION]
        # A canary someone set by hand (a new STORAGE_URI and canaryTrafficPercent with kubectl):
        # the model-version annotation names it when it differs from the recorded stable.
        served = ann.get(MODEL_VERSION_ANNOTATION)
        pct = self.canary_percent(isvc)
        if pct not in (None, 0) and served and served != ann.get(STABLE_VERSION):
            return served
        return None

    def stable_version(self, isvc: dict[str, Any]) -> str | None:
        return annotations_of(isvc).get(STABLE_VERSION)

    def start_patch(
        self, isvc: dict[str, Any], version: str, canary_predictor: dict[str, Any], percent: int
    ) -> dict[str, Any]:
        ann = annotations_of(isvc)
        running, pct = self.canary_version(isvc), self.canary_percent(isvc)
        if running and pct not in (None, 0):
            raise TrafficStateError(
                f"version {running} is already a canary at {pct}%; "
                "promote or roll it back first (`mlops canary promote|rollback`)"
            )
        # After a rollback the spec still names the rolled-back model; the stable one is recorded.
        if pct == 0:
            stable_uri, stable_version = ann.get(STABLE_STORAGE_URI), ann.get(STABLE_VERSION)
        else:
            stable_uri = storage_uri_in(predictor_of(isvc))
            stable_version = ann.get(MODEL_VERSION_ANNOTATION) or ann.get(STABLE_VERSION)
        stable_image = image_in(predictor_of(isvc))
        if (storage_uri_in(canary_predictor), image_in(canary_predictor)) == (
            stable_uri,
            stable_image,
        ):
            raise TrafficStateError(f"{stable_uri} is already the stable model")
        _check_first_step(percent)
        new_predictor = {k: v for k, v in canary_predictor.items() if k != "canaryTrafficPercent"}
        # Knative makes a new revision from the whole predictor: nulls for keys it drops.
        patch_predictor = dict.fromkeys(predictor_of(isvc)) | new_predictor
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
            "spec": {"predictor": patch_predictor | {"canaryTrafficPercent": percent}},
        }

    def _require(self, isvc: dict[str, Any]) -> str:
        version = self.canary_version(isvc)
        if not version or self.canary_percent(isvc) is None:
            raise TrafficStateError(
                "no canary is in progress on this InferenceService (no canaryTrafficPercent and "
                f"{CANARY_VERSION} annotation); start one with `mlops canary start`"
            )
        return version

    def percent_patch(self, isvc: dict[str, Any], percent: int) -> dict[str, Any]:
        self._require(isvc)
        if not 0 <= percent <= 100:
            raise TrafficStateError(f"canary percent must be 0..100, got {percent}")
        return {
            "metadata": _meta(isvc, {}),
            "spec": {"predictor": {"canaryTrafficPercent": percent}},
        }

    def promote_patch(self, isvc: dict[str, Any]) -> dict[str, Any]:
        version = self._require(isvc)
        return {
            "metadata": _meta(
                isvc,
                {
                    MODEL_VERSION_ANNOTATION: version,
                    STABLE_VERSION: version,
                    STABLE_STORAGE_URI: storage_uri_in(predictor_of(isvc)),
                    CANARY_VERSION: None,
                },
            ),
            "spec": {"predictor": {"canaryTrafficPercent": None}},
        }

    def rollback_patch(self, isvc: dict[str, Any]) -> dict[str, Any]:
        version = self._require(isvc)
        return {
            "metadata": _meta(isvc, {CANARY_VERSION: None, ROLLED_BACK_VERSION: version}),
            "spec": {"predictor": {"canaryTrafficPercent": 0}},
        }

    def observed(self, isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        """The latest revision's share in status.components.predictor.traffic (Knative mode only;
        Standard mode fills status.canaryStatuses instead, read by StandardCanary.observed)."""
        traffic = (
            isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic") or []
        )
        if not traffic:
            return None, []
        latest = sum(int(t.get("percent") or 0) for t in traffic if t.get("latestRevision"))
        return latest, traffic

    def confirmed(self, isvc: dict[str, Any], want: int | None) -> bool:
        return self.observed(isvc)[0] == (100 if want is None else want)


def canary_predictor_name(version: str, image: str | None = None) -> str:
    """A Standard-mode predictor name for a version (the CRD's pattern ^[a-z]([-a-z0-9]*[a-z0-9])?$);
    with `image`, a name for that version on that image (an image-only rollout: same model, so
    the version alone would not tell the canary's Deployment from the stable's)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", str(version).lower()).strip("-")
    name = f"v{slug}" if slug else "canary"
    if image is None:
        return name
    return f"{name}-{hashlib.sha256(image.encode()).hexdigest()[:8]}"


class StandardCanary:
    """KServe Standard mode, 0.21: one `spec.canary` entry with a named predictor."""

    name = "standard"

    @staticmethod
    def _entry(isvc: dict[str, Any]) -> dict[str, Any] | None:
        entries = isvc.get("spec", {}).get("canary") or []
        if len(entries) > 1:
            raise TrafficStateError(
                f"spec.canary has {len(entries)} entries; a rollout analyses one canary at a time"
            )
        return entries[0] if entries else None

    def canary_percent(self, isvc: dict[str, Any]) -> int | None:
        entry = self._entry(isvc)
        return None if entry is None else int(entry.get("trafficPercent") or 0)

    def canary_version(self, isvc: dict[str, Any]) -> str | None:
        entry = self._entry(isvc)
        if entry is None:
            return None
        ann = annotations_of(isvc).get(CANARY_VERSION)
        if ann:
            return ann
        # An entry added with kubectl: its predictor name is the version ("v3" -> "3").
        name = str((entry.get("predictor") or {}).get("name") or "")
        return name[1:] if re.fullmatch(r"v\d+", name) else (name or None)

    def stable_version(self, isvc: dict[str, Any]) -> str | None:
        ann = annotations_of(isvc)
        return ann.get(STABLE_VERSION) or ann.get(MODEL_VERSION_ANNOTATION)

    def start_patch(
        self, isvc: dict[str, Any], version: str, canary_predictor: dict[str, Any], percent: int
    ) -> dict[str, Any]:
        if self._entry(isvc) is not None:
            raise TrafficStateError(
                f"version {self.canary_version(isvc)} is already a canary in spec.canary; "
                "promote or roll it back first"
            )
        _check_first_step(percent)
        stable = predictor_of(isvc)
        stable_uri = storage_uri_in(stable)
        if (storage_uri_in(canary_predictor), image_in(canary_predictor)) == (
            stable_uri,
            image_in(stable),
        ):
            raise TrafficStateError(f"{stable_uri} is already the stable model")
        entry_predictor = {
            k: v
            for k, v in canary_predictor.items()
            if k not in (*_STABLE_ONLY_FIELDS, "canaryTrafficPercent", "minReplicas")
        }
        name = canary_predictor_name(version)
        if storage_uri_in(canary_predictor) == stable_uri or name == stable.get("name"):
            # Same model on a new image (or the version the stable predictor is named after):
            # KServe refuses a canary named like the stable predictor (validateCanarySpecs).
            name = canary_predictor_name(version, image_in(canary_predictor) or "")
        if name == stable.get("name"):
            raise TrafficStateError(f"the stable predictor is already named {stable['name']!r}")
        entry_predictor["name"] = name
        return {
            "metadata": _meta(
                isvc,
                {
                    STABLE_VERSION: self.stable_version(isvc),
                    STABLE_STORAGE_URI: stable_uri,
                    CANARY_VERSION: version,
                },
            ),
            "spec": {"canary": [{"predictor": entry_predictor, "trafficPercent": percent}]},
        }

    def _require(self, isvc: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        entry, version = self._entry(isvc), self.canary_version(isvc)
        if entry is None or not version:
            raise TrafficStateError(
                "no canary is in progress on this InferenceService (spec.canary is empty); "
                "start one with `mlops canary start` or add a spec.canary entry"
            )
        return version, entry

    def percent_patch(self, isvc: dict[str, Any], percent: int) -> dict[str, Any]:
        _, entry = self._require(isvc)
        if not 0 <= percent <= 100:
            raise TrafficStateError(f"canary percent must be 0..100, got {percent}")
        # spec.canary is an atomic list: the whole entry is written back.
        return {
            "metadata": _meta(isvc, {}),
            "spec": {"canary": [{**entry, "trafficPercent": percent}]},
        }

    def promote_patch(self, isvc: dict[str, Any]) -> dict[str, Any]:
        version, entry = self._require(isvc)
        stable = predictor_of(isvc)
        # The stable Deployment becomes the canary's named one; its scaling stays the stable's.
        new = entry["predictor"] | {
            k: stable[k] for k in (*_STABLE_ONLY_FIELDS, "minReplicas") if k in stable
        }
        if storage_uri_in(entry["predictor"]) == storage_uri_in(stable):
            # An image-only rollout: KServe refuses a predictor.name change that keeps the model
            # (validatePredictorNameChange), so the stable predictor keeps its name (or none) and
            # its Deployment rolls to the canary's image.
            new.pop("name", None)
            if "name" in stable:
                new["name"] = stable["name"]
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
            "spec": {"predictor": dict.fromkeys(stable) | new, "canary": None},
        }

    def rollback_patch(self, isvc: dict[str, Any]) -> dict[str, Any]:
        version, _ = self._require(isvc)
        return {
            "metadata": _meta(isvc, {CANARY_VERSION: None, ROLLED_BACK_VERSION: version}),
            "spec": {"canary": None},
        }

    def drain_patch(self, isvc: dict[str, Any]) -> dict[str, Any]:
        """The canary's share to 0 with its pods kept: KServe sizes a canary Deployment at
        ceil(stable * trafficPercent / 100) replicas unless the entry sets minReplicas
        (canaryReplicaCount), so at 0% without it the pods would stop while the route still sends
        them requests. minReplicas may not exceed the stable's (validateCanarySpecs)."""
        _, entry = self._require(isvc)
        stable_min = predictor_of(isvc).get("minReplicas")
        stable_min = 1 if stable_min is None else int(stable_min)
        pct = int(entry.get("trafficPercent") or 0)
        keep = min(stable_min, max(1, -(-stable_min * pct // 100)))
        predictor = dict(entry["predictor"])
        if keep >= 1:
            predictor["minReplicas"] = keep
        return {
            "metadata": _meta(isvc, {}),
            "spec": {"canary": [{**entry, "predictor": predictor, "trafficPercent": 0}]},
        }

    def observed(self, isvc: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
        statuses = isvc.get("status", {}).get("canaryStatuses") or []
        if not statuses:
            return None, []
        return sum(int(s.get("trafficPercent") or 0) for s in statuses if s.get("ready")), statuses

    def confirmed(self, isvc: dict[str, Any], want: int | None) -> bool:
        observed, statuses = self.observed(isvc)
        if want is None or want == 0:  # promoted or rolled back: no canary left in the status
            return not statuses
        return observed == want


MODES: dict[str, TrafficMode] = {"serverless": ServerlessCanary(), "standard": StandardCanary()}
# KServe's own default when the annotation is absent (constants.DefaultDeployment = Standard).
_MODE_OF_ANNOTATION = {
    "Knative": "serverless",  # KServe 0.21's name; Serverless is its deprecated alias
    "Serverless": "serverless",
    "Standard": "standard",
    "RawDeployment": "standard",
}


def mode_of(isvc: dict[str, Any]) -> TrafficMode:
    """The traffic mode the object's own deployment-mode annotation selects."""
    value = annotations_of(isvc).get(DEPLOYMENT_MODE_ANNOTATION, "Standard")
    if value not in _MODE_OF_ANNOTATION:
        raise TrafficStateError(
            f"{DEPLOYMENT_MODE_ANNOTATION}={value!r} is not a mode this writer knows "
            f"({sorted(_MODE_OF_ANNOTATION)})"
        )
    return MODES[_MODE_OF_ANNOTATION[value]]


def resolve_mode(mode: str, isvc: dict[str, Any]) -> TrafficMode:
    """`auto` follows the object; `serverless`/`standard` force one."""
    if mode == "auto":
        return mode_of(isvc)
    if mode not in MODES:
        raise TrafficStateError(
            f"unknown canary mode {mode!r}; choose auto or one of {sorted(MODES)}"
        )
    return MODES[mode]


# --- the writer -------------------------------------------------------------------------------

# Annotations written in the same patch as a traffic change (a controller's rollout state), so
# the change and the state that led to it land together or not at all.
Annotations = dict[str, str | None] | None
Build = Callable[[dict[str, Any], TrafficMode], dict[str, Any]]


def _with(build: Build, extra: Annotations) -> Build:
    if not extra:
        return build

    def build_with(cur: dict[str, Any], mode: TrafficMode) -> dict[str, Any]:
        patch = build(cur, mode)
        # Not merge_patch: a None here is a removal the API server must see, so it stays.
        meta = patch.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), **extra}
        return patch

    return build_with


class InferenceServiceWriter:
    """Reads and writes one InferenceService through the Kubernetes API (client injected)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        name: str,
        namespace: str,
        *,
        mode: str = "auto",
        max_conflict_retries: int = 5,
    ) -> None:
        if mode != "auto" and mode not in MODES:
            raise TrafficStateError(
                f"unknown canary mode {mode!r}; choose auto or one of {sorted(MODES)}"
            )
        self.api = client.CustomObjectsApi(api_client)
        self.name, self.namespace = name, namespace
        self.mode_name = mode
        self.max_conflict_retries = max_conflict_retries

    @property
    def where(self) -> str:
        return f"InferenceService {self.namespace}/{self.name}"

    def mode(self, isvc: dict[str, Any]) -> TrafficMode:
        return resolve_mode(self.mode_name, isvc)

    def find(self) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise InferenceServiceWriteError(
                f"cannot read {self.where}: {e.status} {e.reason}{_hint(e)}"
            ) from e
        except TransportError as e:
            raise InferenceServiceWriteError(
                f"cannot read {self.where}: the Kubernetes API at "
                f"{self.api.api_client.configuration.host} is unreachable ({e})"
            ) from e

    def route(self) -> dict[str, Any] | None:
        """KServe's HTTPRoute for this InferenceService (Standard mode with Gateway API), or None
        where there is none (Knative mode, or ingress without Gateway API)."""
        try:
            return self.api.get_namespaced_custom_object(
                ROUTE_GROUP, ROUTE_VERSION, self.namespace, ROUTE_PLURAL, route_name(self.name)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise InferenceServiceWriteError(
                f"cannot read HTTPRoute {self.namespace}/{route_name(self.name)}: "
                f"{e.status} {e.reason} (the ServiceAccount needs get on "
                f"{ROUTE_PLURAL}.{ROUTE_GROUP})"
            ) from e
        except TransportError as e:
            raise InferenceServiceWriteError(
                f"cannot read the HTTPRoute of {self.where}: the Kubernetes API is unreachable ({e})"
            ) from e

    def read(self) -> dict[str, Any]:
        isvc = self.find()
        if isvc is None:
            raise InferenceServiceMissing(
                f"{self.where} does not exist; deploy the model first "
                "(`make deploy` or the pipeline's deploy step)"
            )
        return isvc

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        version = annotations_of(body).get(MODEL_VERSION_ANNOTATION, "")
        uri = storage_uri_in(body["spec"]["predictor"]) or ""
        body = merge_patch(body, {"metadata": {"annotations": initial_annotations(version, uri)}})
        return self._call(
            "create",
            lambda: self.api.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, body
            ),
        )

    def apply(
        self,
        build: Callable[[dict[str, Any], TrafficMode], dict[str, Any]],
        *,
        based_on: str | None = None,
    ) -> dict[str, Any]:
        """Read, build the patch from what was read, apply; on 409 read again and rebuild.

        `based_on`: the resourceVersion a decision was made from (the controller's). Then any
        change since is a conflict to give up on, not to rebuild over: the caller re-reads and
        decides again, so a traffic change is never applied on a stale analysis.
        """
        for attempt in range(self.max_conflict_retries + 1):
            current = self.read()
            seen = current["metadata"].get("resourceVersion")
            if based_on is not None and seen != based_on:
                raise TrafficStateError(
                    f"{self.where} changed since it was read (resourceVersion {based_on} -> "
                    f"{seen}); it is read again and decided again"
                )
            body = build(current, self.mode(current))
            try:
                return self.api.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, body
                )
            except ApiException as e:
                if e.status == 409 and based_on is None and attempt < self.max_conflict_retries:
                    logger.info("%s changed while patching (409); retrying", self.where)
                    continue
                if e.status == 409:
                    raise TrafficStateError(
                        f"{self.where} changed while patching (409); read it again"
                    ) from e
                raise InferenceServiceWriteError(
                    f"cannot patch {self.where}: {e.status} {e.reason}{_hint(e)}: {e.body}"
                ) from e
            except TransportError as e:
                raise InferenceServiceWriteError(
                    f"cannot patch {self.where}: the Kubernetes API is unreachable ({e})"
                ) from e
        raise AssertionError("unreachable")

    def start_canary(
        self,
        version: str,
        percent: int,
        *,
        storage_uri: str | None = None,
        predictor: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Put `version` out at `percent`: a whole new predictor (the deploy step, which may also
        change the image), or the stable predictor pointed at `storage_uri` (the canary CLI)."""
        if (storage_uri is None) == (predictor is None):
            raise TrafficStateError("start a canary with a storage_uri or a predictor, not both")

        def build(cur: dict[str, Any], mode: TrafficMode) -> dict[str, Any]:
            new = predictor or with_storage_uri(predictor_of(cur), storage_uri or "")
            return mode.start_patch(cur, str(version), new, percent)

        return self.apply(build)

    def set_canary_percent(
        self, percent: int, *, extra_annotations: Annotations = None, based_on: str | None = None
    ) -> dict[str, Any]:
        build = _with(lambda cur, mode: mode.percent_patch(cur, percent), extra_annotations)
        return self.apply(build, based_on=based_on)

    def promote(
        self, *, extra_annotations: Annotations = None, based_on: str | None = None
    ) -> dict[str, Any]:
        build = _with(lambda cur, mode: mode.promote_patch(cur), extra_annotations)
        return self.apply(build, based_on=based_on)

    def rollback(
        self, *, extra_annotations: Annotations = None, based_on: str | None = None
    ) -> dict[str, Any]:
        build = _with(lambda cur, mode: mode.rollback_patch(cur), extra_annotations)
        return self.apply(build, based_on=based_on)

    def record_decision(self, summary: dict[str, Any]) -> dict[str, Any]:
        return self.apply(lambda cur, _: decision_annotation_patch(cur, summary))

    def annotate(
        self, values: dict[str, str | None], *, based_on: str | None = None
    ) -> dict[str, Any]:
        """Set (or, with None, remove) annotations, guarded by the resourceVersion read."""
        return self.apply(lambda cur, _: {"metadata": _meta(cur, values)}, based_on=based_on)

    def _call(self, verb: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except ApiException as e:
            raise InferenceServiceWriteError(
                f"cannot {verb} {self.where}: {e.status} {e.reason}{_hint(e)}: {e.body}"
            ) from e
        except TransportError as e:
            raise InferenceServiceWriteError(
                f"cannot {verb} {self.where}: the Kubernetes API is unreachable ({e})"
            ) from e


def _hint(e: ApiException) -> str:
    if e.status != 403:
        return ""
    return (
        " (the ServiceAccount needs get/patch on inferenceservices in this namespace: the "
        "inferenceservice-deployer or canary-controller Role that `make deploy` applies)"
    )


def predictor_pods(isvc_name: str, predictor_name: str | None) -> str:
    """The pod names of a Standard-mode predictor, as an RE2 pattern: KServe names the Deployment
    like its Service (predictor.go: buildObjectMeta(isvc, PredictorServiceName(...)), and the
    canary's Deployment is read back by that name), and a Deployment's pods are
    <deployment>-<pod-template hash>-<suffix> (names under ~47 characters, before truncation)."""
    return f"{predictor_service(isvc_name, predictor_name)}-[a-z0-9]+-[a-z0-9]+"


def role_pods(isvc: dict[str, Any]) -> tuple[str, str] | None:
    """The stable's and the canary's pod patterns where only their pods tell them apart: an
    image-only rollout in Standard mode (one model, so one `version` label on both); else None,
    and the version label is enough."""
    if mode_of(isvc).name != "standard":
        return None
    entries = isvc.get("spec", {}).get("canary") or []
    if len(entries) != 1:
        return None
    stable, canary = predictor_of(isvc), entries[0].get("predictor") or {}
    if storage_uri_in(canary) != storage_uri_in(stable):
        return None
    name = isvc["metadata"]["name"]
    return predictor_pods(name, stable.get("name")), predictor_pods(name, canary.get("name"))
