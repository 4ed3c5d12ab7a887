"""The canary: traffic in the policy's steps; at each, sequential tests of errors, latency and
predictions against the stable; promote after the last step, roll back on a failed check, on
repeated failed reads or past the progress deadline."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_control.rollout.analysis import evidence_plan
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.source import Reading
from mlops_control.rollout.step import RolloutProgress, StepResult, rollout_step


@dataclass(frozen=True)
class CanaryStrategy:
    policy: RolloutPolicy
    name: str = "canary"

    @property
    def analysis_interval_s(self) -> float:
        return self.policy.analysis_interval_s

    def begin(self, canary_percent: int, now: float) -> RolloutProgress:
        return RolloutProgress.begin(self.policy, canary_percent, now)

    def target_percent(self, progress: RolloutProgress) -> int:
        return progress.percent(self.policy)

    def step(self, progress: RolloutProgress, reading: Reading, now: float) -> StepResult:
        return rollout_step(self.policy, progress, reading, now)

    def plan(self, progress: RolloutProgress) -> str:
        return evidence_plan(self.policy, progress.state)
