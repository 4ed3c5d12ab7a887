"""Bandit allocation: batched Thompson sampling over label feedback, one interval per step.

`bandit_step(policy, state, evidence)` is pure: the interval's matured rewards (and, optionally,
its serving counters for the guardrails) in, a `BanditDecision` and the next `BanditState` out.

- Allocation: each version's target share is its posterior probability of being best (Monte Carlo
  over normal posteriors of the mean reward, seeded by the interval, so a step is reproducible),
  mixed with the floor: floor + (1 - K*floor) * P(best). The shares move toward the target by at
  most `max_step_percent` per interval (a convex step, so the floor and the sum of 100 hold).
- Drift: `discount` forgets old rewards for the allocation (1: never); the stop rule uses all.
- Stop: a winner when its P(best) exceeds `win_probability`, the always-valid intervals of
  `readout` have separated (so a winner among equal arms is declared with probability <= alpha
  however long the experiment runs), and its guardrails pass.
- Idempotent: the state records the last interval stepped; evidence for it or an earlier one
  changes nothing, so a restarted controller never steps twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from mlops_control.experiments.errors import ExperimentEnded, ExperimentPolicyError
from mlops_control.experiments.evidence import ArmRewards, IntervalEvidence
from mlops_control.experiments.guardrails import ArmGuard, GuardrailPolicy, check_arms
from mlops_control.experiments.policy_doc import policy_from_dict, policy_to_dict
from mlops_control.experiments.readout import (
    PairEvidence,
    VersionReadout,
    add_interval,
    readouts,
    separated_winner,
)
from mlops_control.experiments.reward import RewardSpec
from mlops_control.experiments.split import percents_from_weights
from mlops_core.settings import DEFAULT_WINNER_ALPHA

BanditAction = Literal["allocate", "winner", "drop", "skip"]


@dataclass(frozen=True, kw_only=True)
class BanditPolicy:
    reward: RewardSpec
    floor_percent: int = 5  # every arm keeps at least this share
    max_step_percent: float = 10.0  # the most any share moves in one interval
    interval_s: float = 300.0
    label_window_s: float = 3600.0  # a prediction matures this long after it was made
    win_probability: float = 0.95
    alpha: float = DEFAULT_WINNER_ALPHA  # bound on declaring a winner among equal arms
    min_labelled_per_arm: int = 100
    discount: float = 1.0  # per-interval forgetting of rewards for the allocation
    draws: int = 4000  # Monte Carlo draws for P(best)
    seed: int = 0
    guardrails: GuardrailPolicy = field(default_factory=GuardrailPolicy)

    def __post_init__(self) -> None:
        if not 1 <= self.floor_percent <= 50:
            raise ExperimentPolicyError(
                f"floor_percent must be in [1, 50], got {self.floor_percent}"
            )
        if not 0 < self.max_step_percent <= 100:
            raise ExperimentPolicyError(
                f"max_step_percent must be in (0, 100], got {self.max_step_percent}"
            )
        if self.interval_s <= 0 or self.label_window_s < 0:
            raise ExperimentPolicyError("interval_s must be positive and label_window_s 0 or more")
        if not 0.5 < self.win_probability < 1:
            raise ExperimentPolicyError(
                f"win_probability must be in (0.5, 1), got {self.win_probability}"
            )
        if not 0 < self.alpha < 0.5:
            raise ExperimentPolicyError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0 < self.discount <= 1:
            raise ExperimentPolicyError(f"discount must be in (0, 1], got {self.discount}")
        if self.min_labelled_per_arm < 2 or self.draws < 100:
            raise ExperimentPolicyError("min_labelled_per_arm must be >= 2 and draws >= 100")

    def to_dict(self) -> dict[str, Any]:
        return policy_to_dict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BanditPolicy:
        return policy_from_dict(cls, doc, "bandit")


@dataclass(frozen=True)
class BanditState:
    arms: tuple[str, ...]  # the first is the control (the stable predictor)
    weights: dict[str, float]
    interval: int = -1
    until: float | None = None
    totals: dict[str, ArmRewards] = field(default_factory=dict)
    recent: dict[str, ArmRewards] = field(default_factory=dict)
    guards: dict[str, ArmGuard] = field(default_factory=dict)
    pairs: dict[str, PairEvidence] = field(default_factory=dict)
    winner: str | None = None

    @property
    def percents(self) -> dict[str, int]:
        return percents_from_weights(self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arms": list(self.arms),
            "weights": dict(self.weights),
            "interval": self.interval,
            "until": self.until,
            "totals": {v: r.to_dict() for v, r in self.totals.items()},
            "recent": {v: r.to_dict() for v, r in self.recent.items()},
            "guards": {v: g.to_dict() for v, g in self.guards.items()},
            "pairs": {k: p.to_dict() for k, p in self.pairs.items()},
            "winner": self.winner,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BanditState:
        return cls(
            arms=tuple(doc["arms"]),
            weights={v: float(w) for v, w in doc["weights"].items()},
            interval=int(doc["interval"]),
            until=doc.get("until"),
            totals={v: ArmRewards.from_dict(r) for v, r in doc.get("totals", {}).items()},
            recent={v: ArmRewards.from_dict(r) for v, r in doc.get("recent", {}).items()},
            guards={v: ArmGuard.from_dict(g) for v, g in doc.get("guards", {}).items()},
            pairs={k: PairEvidence.from_dict(p) for k, p in doc.get("pairs", {}).items()},
            winner=doc.get("winner"),
        )


@dataclass(frozen=True)
class BanditDecision:
    action: BanditAction
    reason: str
    percents: dict[str, int]
    previous: dict[str, int]
    p_best: dict[str, float] = field(default_factory=dict)
    readout: dict[str, VersionReadout] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return self.action == "winner"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "percents": self.percents,
            "previous": self.previous,
            "p_best": self.p_best,
            "readout": {v: r.to_dict() for v, r in self.readout.items()},
            "dropped": list(self.dropped),
        }


def start_bandit(policy: BanditPolicy, arms: list[str] | tuple[str, ...]) -> BanditState:
    """Equal shares over `arms` (the first is the control)."""
    arms = tuple(arms)
    if len(arms) < 2 or len(set(arms)) != len(arms):
        raise ExperimentPolicyError(
            f"a bandit needs two or more distinct versions, got {list(arms)}"
        )
    if len(arms) * policy.floor_percent > 100:
        raise ExperimentPolicyError(
            f"{len(arms)} arms with a {policy.floor_percent}% floor each exceed 100%"
        )
    return BanditState(
        arms=arms,
        weights={a: 1.0 / len(arms) for a in arms},
        totals={a: ArmRewards() for a in arms},
        recent={a: ArmRewards() for a in arms},
        guards={a: ArmGuard() for a in arms[1:]},
    )


def probability_best(
    stats: dict[str, ArmRewards], rng: np.random.Generator, draws: int
) -> dict[str, float]:
    """P(each arm has the highest mean reward) under normal posteriors with a one-observation
    prior at the pooled mean and variance; unlabelled arms are as uncertain as the prior."""
    pooled = sum(stats.values(), ArmRewards())
    m0 = pooled.mean if pooled.labelled else 0.0
    v0 = pooled.variance if pooled.labelled >= 2 and pooled.variance > 0 else 0.25
    names = list(stats)
    means, sds = [], []
    for v in names:
        s = stats[v]
        var = s.variance if s.labelled >= 2 and s.variance > 0 else v0
        means.append((s.total + m0) / (s.labelled + 1.0))
        sds.append(np.sqrt(var / (s.labelled + 1.0)))
    samples = rng.normal(np.array(means), np.array(sds), size=(draws, len(names)))
    wins = np.bincount(np.argmax(samples, axis=1), minlength=len(names)) / draws
    return {v: float(w) for v, w in zip(names, wins, strict=True)}


def target_weights(p_best: dict[str, float], floor: float) -> dict[str, float]:
    return {v: floor + (1.0 - len(p_best) * floor) * p for v, p in p_best.items()}


def bounded_step(
    current: dict[str, float], target: dict[str, float], max_step: float
) -> dict[str, float]:
    """Move toward `target` by at most `max_step` in any share: a convex combination, so both
    the sum and any floor both ends respect are kept."""
    largest = max(abs(target[v] - current[v]) for v in current)
    f = 1.0 if largest <= max_step else max_step / largest
    return {v: current[v] + f * (target[v] - current[v]) for v in current}


def bandit_step(
    policy: BanditPolicy, state: BanditState, evidence: IntervalEvidence
) -> tuple[BanditDecision, BanditState]:
    previous = state.percents
    if state.winner is not None:
        raise ExperimentEnded(f"the bandit already declared {state.winner!r}; start a new one")
    if evidence.interval <= state.interval:
        return BanditDecision(
            "skip", f"interval {evidence.interval} was already stepped (last: {state.interval})",
            previous, previous,
        ), state  # fmt: skip
    arms = [a for a in state.weights if state.weights[a] > 0]
    dropped, guards = _guard(policy, state, evidence)
    live = [a for a in arms if a not in dropped]
    zero = ArmRewards()
    totals = {a: state.totals.get(a, zero) + evidence.rewards.get(a, zero) for a in state.arms}
    recent = {
        a: state.recent.get(a, zero).scaled(policy.discount) + evidence.rewards.get(a, zero)
        for a in state.arms
    }
    pairs = add_interval(state.pairs, state.arms, evidence.rewards)
    state = replace(
        state, interval=evidence.interval, until=evidence.until, totals=totals, recent=recent,
        guards=guards, pairs=pairs,
    )  # fmt: skip
    rng = np.random.default_rng([policy.seed, evidence.interval])
    p_best = probability_best({a: recent[a] for a in live}, rng, policy.draws)
    live_totals = {a: totals[a] for a in live}
    tightest = 10.0 * policy.min_labelled_per_arm
    reads = readouts(live_totals, pairs, state.arms[0], policy.alpha, tightest)
    if len(live) == 1:
        reason = "every other arm failed its guardrails"
        return _declare(state, live[0], reason, previous, p_best, reads, dropped)
    leader = max(p_best, key=lambda a: p_best[a])
    separated = separated_winner(
        live_totals, pairs, policy.alpha, tightest, policy.min_labelled_per_arm
    )
    if separated == leader and p_best[leader] > policy.win_probability:
        reason = (
            f"{leader} is best with probability {p_best[leader]:.3f} > {policy.win_probability} "
            "and its always-valid intervals of the difference to every other arm are above 0"
        )
        return _declare(state, leader, reason, previous, p_best, reads, dropped)
    floor = policy.floor_percent / 100.0
    current = {a: (state.weights[a] if a in live else 0.0) for a in live}
    norm = sum(current.values())
    current = {a: max(w / norm, floor) for a, w in current.items()}
    norm = sum(current.values())
    current = {a: w / norm for a, w in current.items()}
    moved = bounded_step(current, target_weights(p_best, floor), policy.max_step_percent / 100.0)
    weights = {a: moved.get(a, 0.0) for a in state.arms}
    state = replace(state, weights=weights)
    action: BanditAction = "drop" if dropped else "allocate"
    reason = (
        f"shares toward P(best) ({', '.join(f'{a} {p:.2f}' for a, p in p_best.items())}), "
        f"at most {policy.max_step_percent:g} points per interval, floor {policy.floor_percent}%"
    )
    if dropped:
        reason = "; ".join(f"{a} dropped: {guards[a].failed}" for a in dropped) + "; " + reason
    return BanditDecision(
        action, reason, state.percents, previous, p_best, reads, tuple(dropped)
    ), state


def _guard(
    policy: BanditPolicy, state: BanditState, evidence: IntervalEvidence
) -> tuple[list[str], dict[str, ArmGuard]]:
    if evidence.serving is None:
        return [], state.guards
    live = {a: g for a, g in state.guards.items() if state.weights.get(a, 0) > 0}
    results, guards = check_arms(
        policy.guardrails, live, state.arms[0], evidence.serving, challengers=len(state.arms) - 1
    )
    merged = {**state.guards, **guards}
    return [v for v, r in results.items() if r.failed], merged


def _declare(
    state: BanditState,
    winner: str,
    reason: str,
    previous: dict[str, int],
    p_best: dict[str, float],
    reads: dict[str, VersionReadout],
    dropped: list[str],
) -> tuple[BanditDecision, BanditState]:
    weights = {a: (1.0 if a == winner else 0.0) for a in state.arms}
    state = replace(state, weights=weights, winner=winner)
    return BanditDecision(
        "winner", reason, state.percents, previous, p_best, reads, tuple(dropped)
    ), state
