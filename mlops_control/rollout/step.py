"""One rollout step: one reading of the metric source in, one decision and the next progress out.

The one place that knows how a reading becomes evidence, used by `mlops canary run` (the loop),
the demo and the in-cluster controller alike:
- the first good reading of a rollout is its baseline (the counters before it are not its
  evidence), and gives the stable's error rate before the rollout;
- every later reading minus the previous one is one analysis window;
- a rollout still undecided after the policy's `progress_deadline_s` is rolled back.

Pure: no I/O and no clock (`now` is handed in), so a rollout resumes from its JSON anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mlops_control.rollout.analysis import (
    CanaryDecision,
    CanaryState,
    NoData,
    Observation,
    SourceFailed,
    analyze,
)
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.source import Reading
from mlops_control.rollout.window import Snapshot, VersionCounters


def step_index_for(policy: RolloutPolicy, percent: int) -> int:
    """The policy step a running canary is at (the largest step not above its percent)."""
    at_or_below = [i for i, s in enumerate(policy.steps) if s <= percent]
    return at_or_below[-1] if at_or_below else 0


@dataclass(frozen=True)
class RolloutProgress:
    """Everything a rollout carries from one step to the next (kept on the InferenceService by
    the controller, in memory by the loop)."""

    state: CanaryState
    baseline: Snapshot | None  # the counters the next window starts from
    started_at: float  # on the caller's clock; the progress deadline counts from here

    @classmethod
    def begin(cls, policy: RolloutPolicy, canary_percent: int, now: float) -> RolloutProgress:
        """A new rollout of a canary now at `canary_percent` (resumed at the step it is at)."""
        return cls(CanaryState(step_index=step_index_for(policy, canary_percent)), None, now)

    def percent(self, policy: RolloutPolicy) -> int:
        """The canary's share this rollout's step asks for."""
        return policy.steps[min(self.state.step_index, len(policy.steps) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.to_dict(),
            "baseline": None
            if self.baseline is None
            else {
                "stable": self.baseline.stable.to_dict(),
                "canary": self.baseline.canary.to_dict(),
            },
            "started_at": self.started_at,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RolloutProgress:
        base = doc.get("baseline")
        return cls(
            state=CanaryState.from_dict(doc["state"]),
            baseline=None
            if base is None
            else Snapshot(
                VersionCounters.from_dict(base["stable"]), VersionCounters.from_dict(base["canary"])
            ),
            started_at=float(doc["started_at"]),
        )


@dataclass(frozen=True)
class StepResult:
    """What one step did: a decision (None when the reading only became the baseline), the
    progress to carry on with, and what was analysed (a window, NoData or SourceFailed)."""

    decision: CanaryDecision | None
    progress: RolloutProgress
    observation: Observation | None


def with_baseline(progress: RolloutProgress, baseline: Snapshot) -> RolloutProgress:
    """The rollout's first good reading: its baseline, and the stable's error rate before it
    (its lifetime counters so far), if it has served anything."""
    state = progress.state
    served = baseline.stable.requests
    if served:
        # No errors in `served` requests is not a rate of 0 (the evidence would be sized for
        # errors that never come): Jeffreys' estimate then, as `base_error_rate` does.
        errors = baseline.stable.errors
        rate = errors / served if errors else 0.5 / (served + 1.0)
        state = replace(state, base_error_rate=rate)
    return replace(progress, state=state, baseline=baseline)


def rollout_step(
    policy: RolloutPolicy, progress: RolloutProgress, reading: Reading, now: float
) -> StepResult:
    """Take the rollout one reading further."""
    if isinstance(reading, Snapshot) and progress.baseline is None:
        return StepResult(None, with_baseline(progress, reading), None)
    observation: Observation
    baseline = progress.baseline
    if isinstance(reading, Snapshot):
        assert baseline is not None
        observation, baseline = reading.minus(baseline), reading
    elif isinstance(reading, NoData | SourceFailed):
        observation = reading
    else:  # a source that broke its contract is a failed read, never a crash
        observation = SourceFailed(f"the metrics source answered {type(reading).__name__}")
    decision, state = analyze(policy, progress.state, observation)
    if not decision.final and now - progress.started_at > policy.progress_deadline_s:
        decision, state = past_deadline(policy, decision, state)
    return StepResult(decision, replace(progress, state=state, baseline=baseline), observation)


def past_deadline(
    policy: RolloutPolicy, decision: CanaryDecision, state: CanaryState
) -> tuple[CanaryDecision, CanaryState]:
    """The rollback of a rollout the policy's deadline ran out on."""
    rollback = replace(
        decision,
        action="rollback",
        canary_percent=0,
        reason=f"progress deadline of {policy.progress_deadline_s:.0f} s passed before the "
        f"canary could be verified (last: {decision.reason})",
    )
    return rollback, replace(state, done="rollback")
