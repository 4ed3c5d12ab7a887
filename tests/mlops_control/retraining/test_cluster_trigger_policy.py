"""The in-cluster retraining watch reads each InferenceService's policy annotation as it is now: an
edited policy, or an object deleted and made again under the same name, is judged by a new
trigger, not by the one the controller made from the old annotation."""

from __future__ import annotations

import json
from typing import Any

from components.isvc_metadata import STABLE_VERSION
from mlops_control.retraining.cluster_trigger import RETRAINING_ANNOTATION, RetrainingWatch
from mlops_control.retraining.trigger import LaunchedRun, RetrainingRequest
from serving.monitoring.drift_monitor import DriftSnapshot

SLOW = {"min_evaluations": 3, "sustain_s": 300, "cooldown_s": 3600}
FAST = {"min_evaluations": 1, "sustain_s": 0, "cooldown_s": 3600}


class Drifting:
    """Every read is a new evaluation (one second later) with a feature drifted."""

    def __init__(self) -> None:
        self.at = 1_000.0

    def read(self, model: str, version: str) -> DriftSnapshot:
        self.at += 1
        return DriftSnapshot(
            at=self.at, model=model, version=version, rows=2000, share_drifted=0.5,
            psi={"monthly_charges": 3.0, "age": 0.0}, effect={"monthly_charges": 0.4, "age": 0.0},
            drifted={"monthly_charges": True, "age": False},
        )  # fmt: skip

    def quality(self, model: str, version: str) -> None:
        return None


class Launcher:
    def __init__(self) -> None:
        self.requests: list[RetrainingRequest] = []

    def launch(self, request: RetrainingRequest) -> LaunchedRun:
        self.requests.append(request)
        return LaunchedRun(run_id=f"run-{len(self.requests)}")


class Changes:
    """Records the watch's writes: the annotations it applied and its Events."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def apply(self, isvc: dict[str, Any], change: Any) -> dict[str, Any]:
        isvc["metadata"]["annotations"].update(change.annotations)
        return isvc

    def event(self, isvc: dict[str, Any], kind: str, message: str) -> None:
        self.events.append(f"{kind}: {message}")


def isvc(uid: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    annotations = {STABLE_VERSION: "1"}
    if policy is not None:
        annotations[RETRAINING_ANNOTATION] = json.dumps(policy)
    return {"metadata": {"namespace": "mlops", "name": "churn", "uid": uid,
                         "annotations": annotations}}  # fmt: skip


def watch() -> tuple[RetrainingWatch, Launcher]:
    launcher = Launcher()
    return RetrainingWatch(Drifting(), launcher, Changes()), launcher  # type: ignore[arg-type]


def test_an_edited_policy_is_the_one_that_judges() -> None:
    w, launcher = watch()
    assert w.reconcile(isvc("a", SLOW), "churn") == "pending"
    assert w.reconcile(isvc("a", SLOW), "churn") == "pending"
    # `kubectl annotate --overwrite` with a policy that fires on one drifting evaluation.
    assert w.reconcile(isvc("a", FAST), "churn") == "fired"
    assert len(launcher.requests) == 1


def test_an_object_made_again_under_its_name_starts_afresh() -> None:
    w, launcher = watch()
    assert w.reconcile(isvc("a", FAST), "churn") == "fired"
    assert w.reconcile(isvc("a", FAST), "churn") == "cooldown"
    # Deleted and made again (a new uid, no record of the old one's run): not in its cool-down.
    assert w.reconcile(isvc("b", FAST), "churn") == "fired"
    assert len(launcher.requests) == 2


def test_a_policy_edit_keeps_the_cool_down_recorded_on_the_object() -> None:
    w, launcher = watch()
    fired = isvc("a", FAST)
    assert w.reconcile(fired, "churn") == "fired"
    # The same object (its last-retraining record kept) with a longer cool-down.
    fired["metadata"]["annotations"][RETRAINING_ANNOTATION] = json.dumps(
        {**FAST, "cooldown_s": 7200}
    )
    assert w.reconcile(fired, "churn") == "cooldown"
    assert len(launcher.requests) == 1


def test_opting_out_then_in_again_starts_afresh() -> None:
    w, _ = watch()
    assert w.reconcile(isvc("a", SLOW), "churn") == "pending"
    assert w.reconcile(isvc("a", None), "churn") == "not opted in"
    assert ("mlops", "churn") not in w.triggers
