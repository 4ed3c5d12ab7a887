"""A/B/n test: N versions at fixed shares, read out on the task metric from label feedback.

`abn_step(policy, state, evidence)` is pure, like the bandit's: one interval of matured rewards
(and serving counters for the guardrails) in, an `ABnDecision` and the next `ABnState` out.

- The shares never move: they are the test's design (`shares`, the first version the control,
  whole percentages summing to 100, each at least 1: KServe's `spec.canary` entries carry the
  others and the stable predictor serves the rest).
- Readout per version (`readout`): the mean reward with an always-valid interval, and the effect
  against the control with its own; the test ends with a winner once one version's differences
  to every other are bounded above 0 (at most `alpha` chance of a wrong winner among equal
  versions, however often the readout is looked at).
- Guardrails (errors, latency, prediction divergence, each against the control) stop the test:
  all traffic goes back to the control and the failing version is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

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

ABnAction = Literal["hold", "winner", "stop", "skip"]


@dataclass(frozen=True, kw_only=True)
class ABnPolicy:
    reward: RewardSpec
    shares: dict[str, int]  # version -> percent, in order; the first is the control
    interval_s: float = 300.0
    label_window_s: float = 3600.0
    alpha: float = 0.05  # bound on a wrong winner
    min_labelled_per_arm: int = 200
    guardrails: GuardrailPolicy = field(default_factory=GuardrailPolicy)

    def __post_init__(self) -> None:
        shares = {str(v): p for v, p in self.shares.items()}
        object.__setattr__(self, "shares", shares)
        if len(shares) < 2:
            raise ExperimentPolicyError(f"an A/B/n test needs two or more versions, got {shares}")
        bad = {v: p for v, p in shares.items() if not isinstance(p, int) or not 1 <= p <= 99}
        if bad:
            raise ExperimentPolicyError(f"shares are whole percentages in [1, 99], got {bad}")
        if sum(shares.values()) != 100:
            raise ExperimentPolicyError(
                f"shares must sum to 100 (the control serves what the others leave), "
                f"got {sum(shares.values())}: {shares}"
            )
        if not 0 < self.alpha < 0.5:
            raise ExperimentPolicyError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if self.interval_s <= 0 or self.label_window_s < 0:
            raise ExperimentPolicyError("interval_s must be positive and label_window_s 0 or more")
        if self.min_labelled_per_arm < 2:
            raise ExperimentPolicyError("min_labelled_per_arm must be at least 2")

    @property
    def control(self) -> str:
        return next(iter(self.shares))

    def to_dict(self) -> dict[str, Any]:
        return policy_to_dict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ABnPolicy:
        return policy_from_dict(cls, doc, "A/B/n")


@dataclass(frozen=True)
class ABnState:
    arms: tuple[str, ...]
    interval: int = -1
    until: float | None = None
    totals: dict[str, ArmRewards] = field(default_factory=dict)
    pairs: dict[str, PairEvidence] = field(default_factory=dict)
    guards: dict[str, ArmGuard] = field(default_factory=dict)
    done: Literal["winner", "stop"] | None = None
    winner: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "arms": list(self.arms),
            "interval": self.interval,
            "until": self.until,
            "totals": {v: r.to_dict() for v, r in self.totals.items()},
            "pairs": {k: p.to_dict() for k, p in self.pairs.items()},
            "guards": {v: g.to_dict() for v, g in self.guards.items()},
            "done": self.done,
            "winner": self.winner,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ABnState:
        return cls(
            arms=tuple(doc["arms"]),
            interval=int(doc["interval"]),
            until=doc.get("until"),
            totals={v: ArmRewards.from_dict(r) for v, r in doc.get("totals", {}).items()},
            pairs={k: PairEvidence.from_dict(p) for k, p in doc.get("pairs", {}).items()},
            guards={v: ArmGuard.from_dict(g) for v, g in doc.get("guards", {}).items()},
            done=doc.get("done"),
            winner=doc.get("winner"),
        )


@dataclass(frozen=True)
class ABnDecision:
    action: ABnAction
    reason: str
    percents: dict[str, int]  # the split after this decision
    readout: dict[str, VersionReadout] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # version -> guardrail reasons

    @property
    def final(self) -> bool:
        return self.action in ("winner", "stop")

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "percents": self.percents,
            "readout": {v: r.to_dict() for v, r in self.readout.items()},
            "failed": self.failed,
        }


def start_abn(policy: ABnPolicy) -> ABnState:
    arms = tuple(policy.shares)
    return ABnState(
        arms=arms,
        totals={a: ArmRewards() for a in arms},
        guards={a: ArmGuard() for a in arms[1:]},
    )


def abn_step(
    policy: ABnPolicy, state: ABnState, evidence: IntervalEvidence
) -> tuple[ABnDecision, ABnState]:
    if state.done is not None:
        raise ExperimentEnded(f"the A/B/n test already ended ({state.done}); start a new one")
    shares = dict(policy.shares)
    if evidence.interval <= state.interval:
        reason = f"interval {evidence.interval} was already stepped (last: {state.interval})"
        return ABnDecision("skip", reason, shares), state
    zero = ArmRewards()
    totals = {a: state.totals.get(a, zero) + evidence.rewards.get(a, zero) for a in state.arms}
    pairs = add_interval(state.pairs, state.arms, evidence.rewards)
    guards = state.guards
    failed: dict[str, str] = {}
    if evidence.serving is not None:
        results, guards = check_arms(
            policy.guardrails, state.guards, policy.control, evidence.serving
        )
        failed = {v: "; ".join(r.failed) for v, r in results.items() if r.failed}
    state = replace(
        state, interval=evidence.interval, until=evidence.until, totals=totals, pairs=pairs,
        guards=guards,
    )  # fmt: skip
    tightest = 10.0 * policy.min_labelled_per_arm
    reads = readouts(totals, pairs, policy.control, policy.alpha, tightest)
    if failed:
        reason = "guardrails stopped the test: " + "; ".join(f"{v}: {r}" for v, r in failed.items())
        back = {a: (100 if a == policy.control else 0) for a in state.arms}
        return ABnDecision("stop", reason, back, reads, failed), replace(state, done="stop")
    winner = separated_winner(totals, pairs, policy.alpha, tightest, policy.min_labelled_per_arm)
    if winner is not None:
        r = reads[winner]
        reason = (
            f"{winner} beats every other version (mean reward {r.mean:.4f}; effect against "
            f"{policy.control} {r.effect:+.4f} in [{r.effect_low:+.4f}, {r.effect_high:+.4f}], "
            f"always valid at alpha {policy.alpha:g})"
        )
        to = {a: (100 if a == winner else 0) for a in state.arms}
        return ABnDecision("winner", reason, to, reads), replace(
            state, done="winner", winner=winner
        )
    short = [a for a in state.arms if totals[a].labelled < policy.min_labelled_per_arm]
    reason = (
        f"waiting for labels: {', '.join(short)} below {policy.min_labelled_per_arm} labelled"
        if short
        else "no version separates from the others yet"
    )
    return ABnDecision("hold", reason, shares, reads), state
