"""`RolloutPolicy`: the rollout's rules as data (Argo Rollouts style), serialisable to JSON/YAML.

A policy is validated on construction, so a bad policy file fails before any traffic moves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_CANARY_STEPS

# The error test's mixture weight on `detect_error_ratio` (the rest on twice that ratio).
AIM_WEIGHT = 2.0 / 3.0


class PolicyError(MlopsError):
    """A rollout policy field is missing, of the wrong type or out of range."""


@dataclass(frozen=True, kw_only=True)
class RolloutPolicy:
    # Canary traffic percentages, in order. Reaching 100 is the promotion.
    steps: tuple[int, ...] = DEFAULT_CANARY_STEPS
    # Canary requests a step must serve (with every check passing) before the next step.
    min_requests_per_step: int = 300
    # Seconds between two analyses (the window the counters' deltas cover).
    analysis_interval_s: float = 30.0
    # Bound on the probability of rolling back a canary that is as good as the stable version,
    # over the whole rollout, however many analyses it takes. Split evenly over the three checks.
    false_rollback_rate: float = 0.01
    # The canary's error rate (5xx share) may be this many times the stable's before it is "bad".
    error_rate_tolerance: float = 1.0
    # Latency: the share of canary requests slower than the stable's `latency_quantile` may be
    # this many times the stable's share (1.5 at p99: the canary's p98.5 may reach stable's p99).
    latency_quantile: float = 0.99
    latency_tolerance: float = 1.5
    # Latency no user notices is not a failure: requests faster than this never count as slow
    # (rounded up to a bucket bound of the servers' histogram). A noisy neighbour on the canary's
    # node, or a low-traffic arm on a loaded machine, adds milliseconds to every request; with a
    # floor above that noise the check judges only slowness that matters. 0: relative only.
    latency_floor_s: float = 0.0
    # Prediction divergence: the largest population stability index between the canary's and the
    # stable's predicted-probability distributions that still counts as "the same behaviour".
    # 0.2, as the drift monitor's PSI threshold. Two XGBoost retrains on fresh 20k-row samples
    # differ by PSI ~0.02 (on 3k-row samples by ~0.25: small training sets make noisy models).
    max_prediction_divergence: float = 0.2
    # Effect sizes (multiples of the tolerance) the sequential test mixes over; larger values
    # catch gross failures in fewer requests, smaller ones catch subtle ones at all.
    sequential_alternatives: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0)
    # Fairness to a new version: its first requests of the rollout (a cold process, lazy
    # initialisation, empty caches) are served and checked for errors and predictions, but left
    # out of the latency check and of the step's request count.
    warmup_requests: int = 50
    # Evidence before promotion: the error-rate ratio (canary / stable) that must be caught with
    # probability `power`. When set, each step holds until the canary has served the requests this
    # needs at the stable's observed error rate, and the error test aims its mixture at this ratio
    # (and twice it; see error_alternatives). None: only `min_requests_per_step` sets the evidence
    # per step.
    detect_error_ratio: float | None = None
    power: float = 0.9
    # The share of `false_rollback_rate` the error check may spend; latency and predictions split
    # the rest evenly. None: an even third each, or half for errors when `detect_error_ratio` is
    # set (the policy has said which failure the rollout must catch, so its test gets the larger
    # share: log(2) less evidence to collect, 0.2 nats more for each of the other two).
    error_budget_share: float | None = None
    # Consecutive analyses whose metrics could not be read before rolling back (fail safe).
    max_failed_analyses: int = 3
    # Seconds the whole rollout may take before it is rolled back as unverifiable.
    progress_deadline_s: float = 3600.0

    def __post_init__(self) -> None:
        steps = tuple(int(s) for s in self.steps)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(
            self, "sequential_alternatives", tuple(float(a) for a in self.sequential_alternatives)
        )
        if not steps or any(not 0 < s <= 100 for s in steps):
            raise PolicyError(f"steps must be percentages in (0, 100], got {list(steps)}")
        if list(steps) != sorted(set(steps)):
            raise PolicyError(f"steps must be strictly increasing, got {list(steps)}")
        if steps[-1] != 100:
            raise PolicyError(f"the last step must be 100 (the promotion), got {steps[-1]}")
        if self.min_requests_per_step < 1:
            raise PolicyError("min_requests_per_step must be at least 1")
        if self.analysis_interval_s <= 0 or self.progress_deadline_s <= 0:
            raise PolicyError("analysis_interval_s and progress_deadline_s must be positive")
        if not 0 < self.false_rollback_rate < 0.5:
            raise PolicyError(
                f"false_rollback_rate must be in (0, 0.5), got {self.false_rollback_rate}"
            )
        if self.error_rate_tolerance < 1 or self.latency_tolerance < 1:
            raise PolicyError("error_rate_tolerance and latency_tolerance must be at least 1")
        if not 0.5 <= self.latency_quantile < 1:
            raise PolicyError(f"latency_quantile must be in [0.5, 1), got {self.latency_quantile}")
        if self.latency_floor_s < 0:
            raise PolicyError("latency_floor_s must be 0 or more")
        if self.max_prediction_divergence <= 0:
            raise PolicyError("max_prediction_divergence must be positive")
        if not self.sequential_alternatives or min(self.sequential_alternatives) <= 1:
            raise PolicyError("sequential_alternatives must be effect sizes above 1")
        if self.max_failed_analyses < 1:
            raise PolicyError("max_failed_analyses must be at least 1")
        if self.warmup_requests < 0:
            raise PolicyError("warmup_requests must be 0 or more")
        if self.detect_error_ratio is not None:
            object.__setattr__(self, "detect_error_ratio", float(self.detect_error_ratio))
            if self.detect_error_ratio <= self.error_rate_tolerance:
                raise PolicyError(
                    f"detect_error_ratio ({self.detect_error_ratio:g}) must be above "
                    f"error_rate_tolerance ({self.error_rate_tolerance:g}): an effect within the "
                    "tolerance is not a failure"
                )
        if not 0.5 <= self.power < 1:
            raise PolicyError(f"power must be in [0.5, 1), got {self.power}")
        if self.error_budget_share is not None:
            object.__setattr__(self, "error_budget_share", float(self.error_budget_share))
            if not 0 < self.error_budget_share < 1:
                raise PolicyError(
                    f"error_budget_share must be in (0, 1), got {self.error_budget_share}"
                )

    @property
    def first_step(self) -> int:
        return self.steps[0]

    def check_alpha(self, check: str) -> float:
        """The false-rollback probability check `check` (errors, latency, predictions) may spend;
        the three sum to `false_rollback_rate` (a union bound over the checks)."""
        share = self.error_budget_share
        if share is None:
            share = 0.5 if self.detect_error_ratio is not None else 1.0 / 3.0
        if check == "errors":
            return self.false_rollback_rate * share
        return self.false_rollback_rate * (1.0 - share) / 2.0

    @property
    def error_alternatives(self) -> tuple[float, ...]:
        """The effect sizes (multiples of the tolerance) the error test mixes over: with a
        `detect_error_ratio`, that ratio and twice it (one for the effect the policy must catch,
        one for gross failures, which the second catches in a few events); otherwise the
        defaults. Every alternative added costs the aimed one evidence."""
        if self.detect_error_ratio is None:
            return self.sequential_alternatives
        aim = self.detect_error_ratio / self.error_rate_tolerance
        return (aim, 2.0 * aim)

    @property
    def error_weights(self) -> tuple[float, ...] | None:
        """The mixture's weights over `error_alternatives`: two thirds on the aimed ratio when
        there is one (log(3/2) nats to collect rather than log(2) at even weights), else even."""
        if self.detect_error_ratio is None:
            return None
        return (AIM_WEIGHT, 1.0 - AIM_WEIGHT)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = list(self.steps)
        d["sequential_alternatives"] = list(self.sequential_alternatives)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RolloutPolicy:
        if not isinstance(doc, dict):
            raise PolicyError(f"a rollout policy is a mapping, got {type(doc).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise PolicyError(f"unknown rollout policy fields {unknown}; known: {sorted(known)}")
        try:
            return cls(**doc)
        except (TypeError, ValueError) as e:
            raise PolicyError(f"invalid rollout policy: {e}") from e

    @classmethod
    def load(cls, path: str | Path) -> RolloutPolicy:
        """Read a policy from a YAML or JSON file (JSON is YAML)."""
        p = Path(path)
        if not p.is_file():
            raise PolicyError(f"rollout policy file {p} does not exist")
        try:
            doc = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise PolicyError(f"rollout policy file {p} is not valid YAML/JSON: {e}") from e
        return cls.from_dict(doc)
