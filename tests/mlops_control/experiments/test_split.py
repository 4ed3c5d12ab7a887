"""Shares as KServe's `spec.canary` takes them, pinned to KServe's own source at
KSERVE_SOURCE_COMMIT (versions.mk)."""

from __future__ import annotations

import pytest

from mlops_control.experiments.split import SplitError, kserve_canaries, percents_from_weights
from tests.upstream import kserve_file


def test_kserve_canary_is_a_list_of_predictors_with_a_traffic_percent_summing_to_100_at_most() -> (
    None
):
    types = kserve_file("pkg/apis/serving/v1beta1/inference_service.go")
    assert 'Canary []CanarySpec `json:"canary,omitempty"`' in types
    assert 'TrafficPercent int32 `json:"trafficPercent"`' in types
    assert "The sum of all canary TrafficPercent values must be <= 100." in types
    validation = kserve_file("pkg/apis/serving/v1beta1/inference_service_validation.go")
    assert "canary.TrafficPercent < 0 || canary.TrafficPercent > 100" in validation
    assert "if totalTraffic > 100 {" in validation
    assert "canary predictor.name %q conflicts with stable predictor name" in validation


def test_three_versions_become_two_canary_entries_and_the_stable_takes_the_rest() -> None:
    percents = percents_from_weights({"stable": 0.5, "b": 0.3, "c": 0.2})
    entries = kserve_canaries(percents, "stable")
    assert entries == [{"name": "b", "trafficPercent": 30}, {"name": "c", "trafficPercent": 20}]
    assert sum(e["trafficPercent"] for e in entries) <= 100


def test_rounding_keeps_the_sum_and_never_drops_an_arm_below_its_whole_part() -> None:
    weights = {"a": 0.05, "b": 0.05, "c": 0.05, "d": 0.85 - 1e-12}
    percents = percents_from_weights(weights)
    assert sum(percents.values()) == 100 and min(percents.values()) >= 5
    assert percents_from_weights({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}


def test_a_split_kserve_would_refuse_is_refused_here() -> None:
    with pytest.raises(SplitError, match="sum to 100"):
        kserve_canaries({"stable": 50, "b": 60}, "stable")
    with pytest.raises(SplitError, match="not one of"):
        kserve_canaries({"a": 50, "b": 50}, "stable")
