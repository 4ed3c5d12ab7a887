from __future__ import annotations

import json

import numpy as np

from mlops_control.experiments.guardrails import ArmGuard, GuardrailPolicy, check_arms
from mlops_control.rollout.window import Histogram, VersionCounters

LATENCY = (0.01, 0.05, 0.1, 0.5, float("inf"))
SCORES = (0.2, 0.4, 0.6, 0.8, float("inf"))


def _counts(bounds: tuple[float, ...], values: np.ndarray) -> tuple[int, ...]:
    counts = np.bincount(np.searchsorted(bounds, values), minlength=len(bounds))
    return tuple(int(c) for c in counts)


def served(
    rng: np.random.Generator, n: int, *, error_rate=0.005, slow=1.0, shift=0.0
) -> VersionCounters:  # type: ignore[no-untyped-def]
    latency = rng.gamma(4.0, 0.005 * slow, n)
    scores = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    return VersionCounters(
        requests=n,
        errors=int(rng.binomial(n, error_rate)),
        latency=Histogram(LATENCY, _counts(LATENCY, latency)),
        predictions=Histogram(SCORES, _counts(SCORES, scores)),
    )


def run(rng: np.random.Generator, intervals: int, **challenger) -> dict[str, ArmGuard]:  # type: ignore[no-untyped-def]
    policy = GuardrailPolicy()
    guards = {"b": ArmGuard(), "c": ArmGuard()}
    for _ in range(intervals):
        window = {
            "stable": served(rng, 1000),
            "b": served(rng, 500),
            "c": served(rng, 500, **challenger),
        }
        _, guards = check_arms(policy, guards, "stable", window)
    return guards


def test_versions_as_good_as_the_control_pass_every_check() -> None:
    rng = np.random.default_rng(0)
    stopped = sum(bool(g.failed) for _ in range(20) for g in run(rng, 30).values())
    assert stopped == 0


def test_each_kind_of_bad_version_is_stopped_by_its_own_check() -> None:
    rng = np.random.default_rng(1)
    assert "errors" in run(rng, 30, error_rate=0.05)["c"].failed
    assert "latency" in run(rng, 30, slow=3.0)["c"].failed
    assert "predictions" in run(rng, 30, shift=0.3)["c"].failed
    assert not run(rng, 30, shift=0.3)["b"].failed  # the good challenger carries on


def test_without_the_controls_window_nothing_is_judged() -> None:
    rng = np.random.default_rng(2)
    guards = {"b": ArmGuard()}
    results, after = check_arms(GuardrailPolicy(), guards, "stable", {"b": served(rng, 100)})
    assert results == {} and after == guards


def test_the_evidence_survives_json() -> None:
    guard = run(np.random.default_rng(3), 5)["b"]
    assert ArmGuard.from_dict(json.loads(json.dumps(guard.to_dict()))) == guard
