"""A rollout survives anything its metric source answers (issue 25): NaN, +-Inf, an empty result,
a malformed body or no JSON at all is a failed read: the rollout holds, and after the policy's
limit of failed reads in a row it rolls back. One InferenceService's failure never stops the
others.

The answers come over real HTTP on 127.0.0.1 from a server shaped as Prometheus' query API
(prometheus_standin.py), read by the real PrometheusSource, and go through the real rollout loop
(`run_rollout`, what `mlops canary run` runs) and the real controller (`Reconciler`, `Controller`).
What stands in: the traffic actuator of the loop (an in-memory one, since what is under test is
the loop's reading, not the router) and, for the controller, the Kubernetes API: an in-memory
store that applies the controller's merge patches (`change_patch`, the same code that builds them
for the API server) under the same resourceVersion guard. The controller against a real
kube-apiserver is tests/apiserver/test_apiserver_canary_controller.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from components import isvc_metadata as names
from components import isvc_traffic as traffic
from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    InferenceServiceSpec,
    build_inference_service,
)
from mlops_control.controller import Controller, Reconciler
from mlops_control.records import DecisionRecord, RolloutRecord
from mlops_control.rollout.analysis import CanaryDecision, CanaryState, evidence_plan
from mlops_control.rollout.loop import run_rollout
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.prometheus_source import PrometheusSource
from mlops_control.traffic.actuator import TrafficStatus
from mlops_control.traffic.isvc_changes import Change, change_patch
from mlops_core.jsonl_log import DecisionLog
from tests.components.kserve_standin import KServeStandIn
from tests.mlops_control.prometheus_standin import PrometheusStandIn

POLICY = RolloutPolicy(analysis_interval_s=1.0, max_failed_analyses=3, warmup_requests=0)
BROKEN = ("NaN", "+Inf", "-Inf", "empty", "malformed", "not json", "error")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


@dataclass
class InMemoryActuator:
    """The loop's TrafficActuator, kept in memory (the router is not what is under test)."""

    stable: str = "1"
    canary: str | None = "2"
    percent: int = 10
    moves: list[str] = field(default_factory=list)

    def status(self) -> TrafficStatus:
        return TrafficStatus("churn", self.stable, self.canary, self.percent, self.percent)

    def start(self, version: str, percent: int) -> TrafficStatus:
        self.canary, self.percent = version, percent
        return self.status()

    def set_canary_percent(self, percent: int) -> TrafficStatus:
        self.moves.append(f"{percent}%")
        self.percent = percent
        return self.status()

    def promote(self) -> TrafficStatus:
        self.moves.append("promote")
        self.stable, self.canary, self.percent = str(self.canary), None, 0
        return self.status()

    def rollback(self) -> TrafficStatus:
        self.moves.append("rollback")
        self.canary, self.percent = None, 0
        return self.status()

    def record(self, decision: CanaryDecision, status: TrafficStatus) -> None:
        pass

    def record_event(self, action: str, message: str, summary: dict[str, Any]) -> None:
        pass


def _run_loop(
    prom: PrometheusStandIn, tmp_path, script: list[str]
) -> tuple[list, InMemoryActuator]:
    """The loop with the stand-in answering `script[i]` at the i-th read (good after it)."""
    clock, actuator, decisions = Clock(), InMemoryActuator(), []
    reads = iter(script)

    def sleep(s: float) -> None:
        clock.sleep(s)
        prom.answer = next(reads, "good")

    final = run_rollout(
        model="churn",
        actuator=actuator,
        source_for=lambda _status: PrometheusSource(prom.url),
        policy=POLICY,
        log=DecisionLog(tmp_path / "decisions.jsonl"),
        on_decision=lambda d, _: decisions.append(d),
        clock=clock,
        sleep=sleep,
    )
    assert final is decisions[-1]
    return decisions, actuator


@pytest.mark.parametrize("bad", BROKEN)
def test_the_loop_holds_on_a_broken_answer_and_rolls_back_after_the_policys_limit(
    tmp_path, bad: str
) -> None:
    with PrometheusStandIn("1", "2") as prom:
        decisions, actuator = _run_loop(prom, tmp_path, [bad] * 5)
    assert [d.action for d in decisions] == ["hold", "hold", "rollback"]
    assert actuator.moves == ["rollback"]
    assert "metrics source failed (1/3)" in decisions[0].reason
    assert "could not be read in 3 analyses in a row" in decisions[-1].reason
    if bad in ("NaN", "+Inf", "-Inf"):
        assert "not a finite count" in decisions[0].reason
    # Every decision was logged as JSON (a NaN must not reach the log as a bare NaN token).
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_the_loop_recovers_when_the_source_does_before_the_limit(tmp_path) -> None:
    with PrometheusStandIn("1", "2") as prom:
        decisions, _ = _run_loop(prom, tmp_path, ["NaN", "good", "+Inf"])
    # A good read between two failed ones resets the count: no rollback for the failures.
    assert decisions[0].action == "hold" and "finite" in decisions[0].reason
    assert not any("in a row" in d.reason for d in decisions)


def test_the_plan_names_no_observed_error_rate_when_there_is_none() -> None:
    policy = RolloutPolicy(detect_error_ratio=2.0)
    plan = evidence_plan(policy, CanaryState())
    assert "50.00%" not in plan and "no base error rate observed yet" in plan
    seen = evidence_plan(policy, CanaryState(base_error_rate=0.01))
    assert "about 1.00%" in seen


# --- the controller ----------------------------------------------------------------------------


class InMemoryInferenceServices:
    """`InferenceServiceChanges` over objects in memory: the controller's own patches, merged as
    the API server merges them, refused when the object changed since it was read."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []  # name, action, message
        self.version = 1000

    def put(self, isvc: dict[str, Any]) -> None:
        self.version += 1
        isvc["metadata"]["resourceVersion"] = str(self.version)
        self.objects[isvc["metadata"]["name"]] = isvc

    def read(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[name])

    def apply(self, isvc: dict[str, Any], change: Change) -> dict[str, Any]:
        current = self.objects[isvc["metadata"]["name"]]
        if current["metadata"]["resourceVersion"] != isvc["metadata"]["resourceVersion"]:
            raise traffic.TrafficStateError("changed since it was read")
        patch = change_patch(current, traffic.mode_of(current), change)
        self.put(traffic.merge_patch(current, patch))
        return self.read(isvc["metadata"]["name"])

    def event(self, isvc: dict[str, Any], action: str, message: str) -> None:
        self.events.append((isvc["metadata"]["name"], action, message))

    def route(self, isvc: dict[str, Any]) -> dict[str, Any] | None:
        return None  # no Gateway API here: a release stage is served once KServe's status says so


def _canary_isvc(name: str) -> dict[str, Any]:
    """v1 stable with v2 as a Standard-mode canary at 10%, opted in to the controller."""
    isvc = build_inference_service(
        InferenceServiceSpec(
            name=name,
            namespace="mlops",
            image="mlops-platform/serving:test",
            storage_uri="s3://m/churn/1",
            model_name="churn",
            model_version="1",
        )
    )
    isvc["metadata"]["annotations"] |= {
        DEPLOYMENT_MODE_ANNOTATION: "Standard",
        names.STABLE_VERSION: "1",
        names.ROLLOUT_POLICY: json.dumps(POLICY.to_dict()),
    }
    isvc["metadata"]["resourceVersion"] = "1"
    mode = traffic.mode_of(isvc)
    canary = traffic.with_storage_uri(traffic.predictor_of(isvc), "s3://m/churn/2")
    return traffic.merge_patch(isvc, mode.start_patch(isvc, "2", canary, 10))


def _reconciler(
    prom: PrometheusStandIn, store: InMemoryInferenceServices, clock: Clock
) -> Reconciler:
    return Reconciler(
        api_client=None,  # type: ignore[arg-type]  # every write goes to `changes`; no API read
        source_for=lambda _ns: PrometheusSource(prom.url),
        clock=clock,
        changes=store,
    )


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf", "malformed"])
def test_the_controller_holds_then_rolls_back_on_broken_answers(bad: str) -> None:
    store, clock = InMemoryInferenceServices(), Clock()
    store.put(_canary_isvc("churn"))
    with PrometheusStandIn("1", "2") as prom:
        r = _reconciler(prom, store, clock)
        outcomes = [r.reconcile(store.read("churn"))]  # started, the first read as baseline
        prom.answer = bad
        for _ in range(3):
            clock.sleep(POLICY.analysis_interval_s)
            outcomes.append(r.reconcile(store.read("churn")))
    assert outcomes == ["started", "hold", "hold", "rollback"]
    # The rollback is staged (components/isvc_release.py): drained to 0% first, then removed
    # once KServe reports it; the stand-in plays KServe's part.
    kserve = KServeStandIn()
    assert traffic.mode_of(store.read("churn")).canary_percent(store.read("churn")) == 0
    for outcome in ("rollback remove: waiting", "rolled back"):
        store.put(kserve.reconcile(store.read("churn")))
        assert r.reconcile(store.read("churn")).startswith(outcome)
    isvc = store.read("churn")
    assert traffic.mode_of(isvc).canary_version(isvc) is None  # the canary is gone
    ann = isvc["metadata"]["annotations"]
    assert names.ROLLOUT_STATE not in ann
    last = DecisionRecord.of(isvc)
    assert last is not None and last.action == "rollback"
    actions = [a for _, a, _ in store.events]
    assert actions == ["start", "failed", "failed", "rolling_back", "rollback"]


def test_the_controller_plan_says_no_rate_was_observed_when_prometheus_has_none() -> None:
    store, clock = InMemoryInferenceServices(), Clock()
    store.put(_canary_isvc("churn"))
    with PrometheusStandIn("1", "2") as prom:
        prom.answer = "NaN"
        outcome = _reconciler(prom, store, clock).reconcile(store.read("churn"))
    assert outcome == "started"
    record = RolloutRecord.of(store.read("churn"))
    assert record is not None and record.progress.baseline is None
    assert "50.00%" not in store.events[0][2]


def test_one_inference_services_failure_never_stops_the_others() -> None:
    store, clock = InMemoryInferenceServices(), Clock()
    store.put(_canary_isvc("broken"))
    store.objects["broken"]["spec"]["canary"] = "not a list"  # a hand-edited object
    store.put(_canary_isvc("churn"))

    class AlwaysLeader:
        def try_acquire(self) -> bool:
            return True

    class InMemoryController(Controller):
        def list(self) -> list[dict[str, Any]]:
            return [store.read(name) for name in sorted(store.objects)]

    with PrometheusStandIn("1", "2") as prom:
        controller = InMemoryController(
            _reconciler(prom, store, clock),
            AlwaysLeader(),  # type: ignore[arg-type]  # the Lease needs an API server
            "mlops",
        )
        first = controller.pass_once()
        prom.answer = "NaN"
        clock.sleep(POLICY.analysis_interval_s)
        second = controller.pass_once()
    assert first["broken"].startswith("error:") and first["churn"] == "started"
    assert second["broken"].startswith("error:") and second["churn"] == "hold"
