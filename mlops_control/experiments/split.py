"""Traffic shares as KServe takes them: whole percentages, the stable predictor taking what the
`spec.canary` entries leave (their `trafficPercent` sum to at most 100, each in [0, 100]:
KServe's `validateCanarySpecs`)."""

from __future__ import annotations

import math

from mlops_control.experiments.errors import ExperimentPolicyError


class SplitError(ExperimentPolicyError):
    """Traffic shares KServe would refuse."""


def percents_from_weights(weights: dict[str, float]) -> dict[str, int]:
    """Whole percentages summing to 100, by largest remainder: an arm never gets less than the
    whole part of its weight, so a weight at or above an integer floor keeps the floor."""
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise SplitError(f"weights must be non-negative with a positive sum, got {weights}")
    exact = {v: 100.0 * w / total for v, w in weights.items()}
    out = {v: math.floor(x + 1e-9) for v, x in exact.items()}
    left = 100 - sum(out.values())
    order = {v: i for i, v in enumerate(weights)}  # ties: the earlier arm (the control first)
    for v in sorted(exact, key=lambda v: (out[v] - exact[v], order[v]))[:left]:
        out[v] += 1
    return out


def kserve_canaries(percents: dict[str, int], stable: str) -> list[dict[str, int | str]]:
    """The `spec.canary` entries (predictor name, trafficPercent) for a split; the stable predictor
    is not an entry: it serves 100 minus their sum."""
    if stable not in percents:
        raise SplitError(f"the stable predictor {stable!r} is not one of {sorted(percents)}")
    if sum(percents.values()) != 100:
        raise SplitError(f"shares must sum to 100, got {sum(percents.values())}: {percents}")
    entries: list[dict[str, int | str]] = []
    for name, p in percents.items():
        if not 0 <= p <= 100:
            raise SplitError(f"{name}: trafficPercent must be in [0, 100], got {p}")
        if name != stable:
            entries.append({"name": name, "trafficPercent": int(p)})
    return entries
