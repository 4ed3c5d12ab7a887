"""What a metrics source reads (cumulative counters per version) and what the engine analyses
(the deltas over one analysis window).

Counters on a model server only grow; a drop means the process restarted, and then the new value
is the delta (what Prometheus' `increase()` does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Histogram:
    """Bucket upper bounds (ascending, ending at +Inf) and per-bucket (not cumulative) counts."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts):
            raise ValueError(
                f"histogram has {len(self.bounds)} bounds but {len(self.counts)} counts"
            )
        if list(self.bounds) != sorted(self.bounds):
            raise ValueError(f"histogram bounds must ascend, got {self.bounds}")

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls(tuple(bounds), (0,) * len(bounds))

    @classmethod
    def from_cumulative(cls, buckets: dict[float, float]) -> Histogram:
        """From Prometheus `le` buckets (cumulative counts keyed by upper bound)."""
        bounds = tuple(sorted(buckets))
        cum = np.array([buckets[b] for b in bounds], dtype=float)
        counts = np.diff(cum, prepend=0.0)
        return cls(bounds, tuple(round(max(float(c), 0.0)) for c in counts))

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    def array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=float)

    def _check_same(self, other: Histogram) -> None:
        if self.bounds != other.bounds:
            raise ValueError(
                f"histograms have different buckets: {self.bounds} vs {other.bounds}; "
                "the stable and canary servers must expose the same metric buckets"
            )

    def __add__(self, other: Histogram) -> Histogram:
        self._check_same(other)
        return Histogram(
            self.bounds, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )

    def minus(self, earlier: Histogram) -> Histogram:
        """The delta since `earlier`; a shrinking total means a counter reset."""
        self._check_same(earlier)
        if self.total < earlier.total or any(
            a < b for a, b in zip(self.counts, earlier.counts, strict=True)
        ):
            return self
        return Histogram(
            self.bounds, tuple(a - b for a, b in zip(self.counts, earlier.counts, strict=True))
        )

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket (as PromQL's histogram_quantile)."""
        total = self.total
        if total == 0:
            return float("nan")
        cum = np.cumsum(self.counts)
        rank = q * total
        i = int(np.searchsorted(cum, rank, side="left"))
        i = min(i, len(self.bounds) - 1)
        upper = self.bounds[i]
        lower = 0.0 if i == 0 else self.bounds[i - 1]
        if upper == float("inf"):
            return lower
        below = 0 if i == 0 else cum[i - 1]
        inside = self.counts[i]
        return float(lower) + (upper - lower) * ((rank - below) / inside if inside else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": [_bound_str(b) for b in self.bounds], "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Histogram:
        return cls(tuple(float(b) for b in doc["bounds"]), tuple(int(c) for c in doc["counts"]))


def _bound_str(b: float) -> str | float:
    return "+Inf" if b == float("inf") else b


@dataclass(frozen=True)
class VersionCounters:
    """One version's counters: cumulative when read from a source, deltas inside a window."""

    requests: int
    errors: int  # 5xx responses; a 4xx is the client's fault, not the version's
    latency: Histogram  # seconds
    predictions: Histogram  # positive-class probability per predicted row

    def restarted_since(self, earlier: VersionCounters) -> bool:
        """Counts that dropped: the server restarted, and counts from zero again."""
        return self.requests < earlier.requests or self.errors < earlier.errors

    def minus(self, earlier: VersionCounters) -> VersionCounters:
        if self.restarted_since(earlier):
            return self  # everything it counted is new
        return VersionCounters(
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            latency=self.latency.minus(earlier.latency),
            predictions=self.predictions.minus(earlier.predictions),
        )

    def __add__(self, other: VersionCounters) -> VersionCounters:
        return VersionCounters(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=self.latency + other.latency,
            predictions=self.predictions + other.predictions,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "latency": self.latency.to_dict(),
            "predictions": self.predictions.to_dict(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> VersionCounters:
        return cls(
            requests=int(doc["requests"]),
            errors=int(doc["errors"]),
            latency=Histogram.from_dict(doc["latency"]),
            predictions=Histogram.from_dict(doc["predictions"]),
        )


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counters of both versions, read at one moment."""

    stable: VersionCounters
    canary: VersionCounters

    def is_sane(self) -> bool:
        """Counts are whole and not negative (what a source must answer)."""
        return all(
            isinstance(n, int) and n >= 0
            for v in (self.stable, self.canary)
            for n in (v.requests, v.errors, *v.latency.counts, *v.predictions.counts)
        )

    def minus(self, earlier: Snapshot) -> Window:
        restarted = tuple(
            role
            for role, now, then in (
                ("stable", self.stable, earlier.stable),
                ("canary", self.canary, earlier.canary),
            )
            if now.restarted_since(then)
        )
        return Window(
            stable=self.stable.minus(earlier.stable),
            canary=self.canary.minus(earlier.canary),
            restarted=restarted,
        )


@dataclass(frozen=True)
class Window:
    """What both versions served during one analysis interval; `restarted` names the sides
    ("stable", "canary") whose server restarted in it, so that all it counted is since its start."""

    stable: VersionCounters
    canary: VersionCounters
    restarted: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"stable": self.stable.to_dict(), "canary": self.canary.to_dict()}
