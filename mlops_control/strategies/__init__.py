"""Release strategies: policies over the one rollout step (mlops_control/rollout/step.py).

A strategy decides how much traffic the new version gets and what ends its release; it never
reads metrics or writes an InferenceService itself. The rollout loop (`mlops canary run`, the
demo) and the in-cluster controller read the metric source, hand each reading to the strategy's
`step`, and carry out the decision through a traffic actuator. So a new strategy is one module
here implementing `ReleaseStrategy`; nothing else changes.

Strategies: `canary` (stepwise traffic, sequential tests, promote or roll back).
"""

from __future__ import annotations

from typing import Protocol

from mlops_control.rollout.source import Reading
from mlops_control.rollout.step import RolloutProgress, StepResult


class ReleaseStrategy(Protocol):
    """One release of a new version against the stable one, one reading at a time.

    Pure: every method takes data and returns data; `now` is the caller's clock in seconds.
    """

    @property
    def name(self) -> str:
        """What users call it ("canary")."""
        ...

    @property
    def analysis_interval_s(self) -> float:
        """Seconds between two readings."""
        ...

    def begin(self, canary_percent: int, now: float) -> RolloutProgress:
        """The progress a release starts from, the new version being at `canary_percent`
        (a release resumed mid-way starts at the step it is at)."""
        ...

    def target_percent(self, progress: RolloutProgress) -> int:
        """The new version's traffic share `progress` asks for."""
        ...

    def step(self, progress: RolloutProgress, reading: Reading, now: float) -> StepResult:
        """One reading in; the decision (None: the reading only became the baseline) and the
        next progress out."""
        ...

    def plan(self, progress: RolloutProgress) -> str:
        """One line saying what evidence the release will need (shown when it starts)."""
        ...
