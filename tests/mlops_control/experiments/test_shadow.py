from __future__ import annotations

import numpy as np
import pytest

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.experiments.shadow import MirroredRequest, ShadowPolicy, shadow_readout


def mirrored(primary, shadow, p_lat=0.010, s_lat=0.012, failed=()) -> list[MirroredRequest]:
    return [
        MirroredRequest(f"r{i}", float(p), p_lat, None if i in failed else float(s), s_lat)
        for i, (p, s) in enumerate(zip(primary, shadow, strict=True))
    ]


def test_an_identical_shadow_passes() -> None:
    p = np.random.default_rng(0).uniform(size=500)
    r = shadow_readout(ShadowPolicy(task="binary", requests=500), mirrored(p, p))
    assert r.status == "pass" and r.agreement == 1.0 and r.errors == 0
    assert r.psi == pytest.approx(0.0, abs=1e-9) and r.latency_ratio == pytest.approx(1.2)


def test_a_shadow_whose_answers_differ_fails_on_agreement_and_psi() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=1000)
    s = np.clip(p + 0.3, 0, 1)  # a shifted model: many answers cross the threshold
    r = shadow_readout(ShadowPolicy(task="binary", requests=1000), mirrored(p, s))
    assert r.status == "fail"
    assert r.agreement < 0.75 and r.psi > 0.2
    assert any("agreement" in x for x in r.reasons) and any("PSI" in x for x in r.reasons)


def test_errors_and_slowness_fail_the_readout() -> None:
    p = np.random.default_rng(2).uniform(size=100)
    r = shadow_readout(
        ShadowPolicy(task="binary", requests=100, max_errors=1),
        mirrored(p, p, s_lat=0.05, failed={3, 7}),
    )
    assert r.status == "fail" and r.errors == 2 and r.latency_ratio == pytest.approx(5.0)
    assert len(r.reasons) == 2


def test_regression_agrees_within_the_tolerance() -> None:
    p = np.linspace(0, 10, 200)
    r = shadow_readout(
        ShadowPolicy(task="regression", requests=200, tolerance=0.5), mirrored(p, p + 0.4)
    )
    assert r.agreement == 1.0 and r.status == "pass"
    r = shadow_readout(
        ShadowPolicy(task="regression", requests=200, tolerance=0.1), mirrored(p, p + 0.4)
    )
    assert r.agreement == 0.0 and r.status == "fail"


def test_multiclass_psi_compares_class_shares() -> None:
    p = np.array([0, 1, 2] * 100)
    s = np.array([0, 0, 2] * 100)
    r = shadow_readout(ShadowPolicy(task="multiclass", requests=300), mirrored(p, s))
    assert r.agreement == pytest.approx(2 / 3) and r.psi > 1.0


def test_the_readout_waits_for_its_requests() -> None:
    p = np.random.default_rng(3).uniform(size=50)
    r = shadow_readout(ShadowPolicy(task="binary", requests=100), mirrored(p, p))
    assert r.status == "waiting" and r.requests == 50 and not r.reasons
    assert r.to_dict()["status"] == "waiting"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ExperimentPolicyError, match="mirror_percent"):
        ShadowPolicy(task="binary", mirror_percent=0)
