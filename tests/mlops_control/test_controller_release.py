"""The controller's staged promotion and rollback: each stage written with its record, a new
controller process (a restart) continuing from the record alone, and at every moment a route that
sends requests only to Services that exist. KServe's part is played by
tests/components/kserve_standin.py (its facts pinned in tests/components/test_isvc_release.py);
the kind test tests/kind/test_release_no_failed_requests.py runs the real one.
"""

from __future__ import annotations

from typing import Any

from components import isvc_metadata as names
from components import isvc_traffic as traffic
from components.isvc_release import ReleaseStage
from mlops_control.controller import Reconciler
from mlops_control.records import RolloutRecord
from mlops_control.rollout.prometheus_source import PrometheusSource
from tests.components.kserve_standin import KServeStandIn, taking_traffic
from tests.mlops_control.test_hostile_metrics import (
    POLICY,
    Clock,
    InMemoryInferenceServices,
    _canary_isvc,
)


class WithGateway(InMemoryInferenceServices):
    """The in-memory objects plus KServe's HTTPRoute, as the stand-in leaves it."""

    def __init__(self, kserve: KServeStandIn) -> None:
        super().__init__()
        self.kserve = kserve

    def route(self, isvc: dict[str, Any]) -> dict[str, Any] | None:
        return self.kserve.route

    def kserve_reconciles(self, name: str = "churn") -> list[str]:
        """KServe meets the object: returns the Services routed to but gone meanwhile."""
        before = self.kserve.route
        self.put(self.kserve.reconcile(self.read(name)))
        return sorted(
            (taking_traffic(before) | taking_traffic(self.kserve.route)) - self.kserve.services
        )


def _restarted(store: InMemoryInferenceServices, clock: Clock) -> Reconciler:
    """A controller process made afresh: nothing carried over but the object."""
    return Reconciler(
        api_client=None,  # type: ignore[arg-type]  # every write goes to `changes`
        source_for=lambda _ns: PrometheusSource("http://127.0.0.1:9"),  # never read here
        clock=clock,
        changes=store,
    )


def _stage(store: InMemoryInferenceServices) -> str | None:
    record = RolloutRecord.of(store.read("churn"))
    return None if record is None or record.release is None else record.release.stage


def _by_hand(command: str) -> tuple[WithGateway, Clock]:
    store, clock = WithGateway(KServeStandIn()), Clock()
    isvc = _canary_isvc("churn")
    isvc["metadata"]["annotations"][names.ROLLOUT_COMMAND] = command
    store.put(isvc)
    assert store.kserve_reconciles() == []  # KServe serves the canary at 10%
    return store, clock


def test_a_promotion_is_staged_and_resumes_after_a_restart_at_every_stage() -> None:
    store, clock = _by_hand("promote")
    assert _restarted(store, clock).reconcile(store.read("churn")) == "promote"
    isvc = store.read("churn")
    assert isvc["spec"]["canary"][0]["trafficPercent"] == 100  # stage 1: the weight first
    assert isvc["spec"]["predictor"].get("name") is None  # not yet retargeted
    assert _stage(store) == "shift"
    assert names.ROLLOUT_COMMAND not in isvc["metadata"]["annotations"]
    # A restart before KServe has acted: the same stage, still waited on, nothing rewritten.
    version = isvc["metadata"]["resourceVersion"]
    waiting = _restarted(store, clock).reconcile(store.read("churn"))
    assert waiting.startswith("promote shift: waiting for KServe to report canary v2 at 100%")
    assert store.read("churn")["metadata"]["resourceVersion"] == version

    assert store.kserve_reconciles() == []
    assert taking_traffic(store.kserve.route) == {"churn-v2-predictor"}
    outcome = _restarted(store, clock).reconcile(store.read("churn"))
    assert outcome.startswith("promote retarget: waiting")  # stage 2 written
    isvc = store.read("churn")
    assert isvc["spec"]["predictor"]["name"] == "v2" and "canary" not in isvc["spec"]
    assert _stage(store) == "retarget"

    assert store.kserve_reconciles() == []  # the old stable, at weight 0, goes unmissed
    assert _restarted(store, clock).reconcile(store.read("churn")) == "promoted"
    isvc = store.read("churn")
    assert names.ROLLOUT_STATE not in isvc["metadata"]["annotations"]
    assert traffic.mode_of(isvc).stable_version(isvc) == "2"
    assert [a for _, a, _ in store.events] == ["promoting", "promote"]
    assert "by hand" in store.events[-1][2]
    # Idle afterwards: nothing more to do.
    assert _restarted(store, clock).reconcile(store.read("churn")) == "no canary"


def test_a_rollback_drains_then_removes_and_resumes_after_a_restart() -> None:
    store, clock = _by_hand("abort")
    assert _restarted(store, clock).reconcile(store.read("churn")) == "rollback"
    entry = store.read("churn")["spec"]["canary"][0]
    assert entry["trafficPercent"] == 0 and entry["predictor"]["minReplicas"] == 1
    assert _stage(store) == "drain"
    assert store.kserve_reconciles() == []
    assert taking_traffic(store.kserve.route) == {"churn-predictor"}
    assert _restarted(store, clock).reconcile(store.read("churn")).startswith("rollback remove")
    assert _stage(store) == "remove" and "canary" not in store.read("churn")["spec"]
    assert store.kserve_reconciles() == []
    assert _restarted(store, clock).reconcile(store.read("churn")) == "rolled back"
    isvc = store.read("churn")
    assert traffic.mode_of(isvc).stable_version(isvc) == "1"
    assert isvc["metadata"]["annotations"][names.ROLLED_BACK_VERSION] == "2"
    assert [a for _, a, _ in store.events] == ["rolling_back", "rollback"]


def test_a_stage_the_gateway_never_serves_is_reported_once_and_still_waited_on() -> None:
    store, clock = _by_hand("promote")
    store.kserve.gateway_accepts = False  # the gateway never takes the shifted route
    reconciler = _restarted(store, clock)
    reconciler.reconcile(store.read("churn"))
    clock.sleep(reconciler.stage_timeout_s + 1)
    for _ in range(3):
        store.kserve_reconciles()
        outcome = reconciler.reconcile(store.read("churn"))
        assert outcome.startswith("promote shift: waiting"), outcome
        assert "NoMatchingParent" in outcome
    assert [a for _, a, _ in store.events] == ["promoting", "failed"]
    isvc = store.read("churn")
    assert isvc["spec"]["predictor"].get("name") is None  # never retargeted unserved
    assert _stage(store) == "shift"


def test_the_release_stage_round_trips_through_the_rollout_record() -> None:
    store, clock = _by_hand("promote")
    _restarted(store, clock).reconcile(store.read("churn"))
    record = RolloutRecord.of(store.read("churn"))
    assert record is not None and record.release == ReleaseStage("promote", "shift")
    assert record.manual and "by hand" in record.release_message
    assert RolloutRecord.from_dict(__import__("json").loads(record.to_json())) == record
    # A record naming no known stage is unreadable, read as absent (records.py).
    broken = record.to_json().replace('"stage":"shift"', '"stage":"teleport"')
    isvc = store.read("churn")
    isvc["metadata"]["annotations"][names.ROLLOUT_STATE] = broken
    assert RolloutRecord.of(isvc) is None
    assert POLICY.analysis_interval_s > 0  # the policy the fixtures opt in with
