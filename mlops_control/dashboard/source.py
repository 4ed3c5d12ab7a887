"""What a dashboard backend answers, in the JSON-ready shapes `views` expects. Times are Unix
seconds (the browser's charts plot them as they are).

- `live()`: for every model the source knows, the newest drift and quality judgement, the rollout
  in progress and the last decision: the portfolio page, in one call for all models.
- `history(model)`: drift per feature, quality per version, the rollout's traffic shares, checks
  and decisions, and the retraining runs, over time.
- `feature(model, name)`: the live distribution of one feature and its drift statistic over time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

# The check each rollout decision carries, and the two numbers that decide it: the evidence and
# the bound it is held against (mlops_control/rollout/analysis.py: a check fails once the evidence
# reaches the bound).
CHECK_EVIDENCE: dict[str, tuple[str, str]] = {
    "errors": ("log_evidence", "log_threshold"),
    "latency": ("log_evidence", "log_threshold"),
    "predictions": ("chi2", "chi2_critical"),
}
FINAL_ACTIONS = ("promote", "rollback")
HISTORY_POINTS = 2000  # per series: enough for hours at one point per 5 s evaluation


class DashboardSource(Protocol):
    kind: str

    def live(self) -> dict[str, dict[str, Any]]: ...

    def history(self, model: str) -> dict[str, Any]: ...

    def feature(self, model: str, name: str) -> dict[str, Any]: ...


def unix(value: Any) -> float | None:
    """A time as Unix seconds: floats pass, ISO strings are parsed, anything else is None."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def check_points(at: float, checks: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Each check of one decision as `[at, evidence, bound, status]`."""
    out: dict[str, list[Any]] = {}
    for c in checks:
        evidence_key, bound_key = CHECK_EVIDENCE.get(c.get("name", ""), ("", ""))
        numbers = c.get("numbers") or {}
        out[c["name"]] = [at, numbers.get(evidence_key), numbers.get(bound_key), c.get("status")]
    return out
