"""The compute choice of a step (`local` or `dask`) and its Dask workers' size, checked when made.

Its own module so that both cluster kinds (components/dask_compute.py, dask_kubecluster.py) take it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops_core.errors import InvalidInputError
from mlops_core.settings import (
    COMPUTE_CHOICES,
    DEFAULT_COMPUTE,
    DEFAULT_DASK_START_TIMEOUT_S,
    DEFAULT_DASK_WORKER_CPU,
    DEFAULT_DASK_WORKER_MEMORY,
    DEFAULT_DASK_WORKERS,
)


class ComputeError(InvalidInputError):
    """A compute choice no step can use (an unknown name, no workers, an unparseable memory)."""


@dataclass(frozen=True, kw_only=True)
class ComputeSpec:
    compute: str = DEFAULT_COMPUTE
    workers: int = DEFAULT_DASK_WORKERS
    worker_memory: str = DEFAULT_DASK_WORKER_MEMORY  # dask's sizes: "2GiB", "512MiB"
    worker_cpu: float = DEFAULT_DASK_WORKER_CPU
    start_timeout_s: float = DEFAULT_DASK_START_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.compute not in COMPUTE_CHOICES:
            raise ComputeError(
                f"compute must be one of {', '.join(COMPUTE_CHOICES)}, got {self.compute!r}"
            )
        if self.workers < 1:
            raise ComputeError(f"dask_workers must be at least 1, got {self.workers}")
        if self.worker_cpu <= 0:
            raise ComputeError(f"dask_worker_cpu must be positive, got {self.worker_cpu}")
        self.memory_bytes()  # refused now, not when the cluster starts

    @property
    def is_dask(self) -> bool:
        return self.compute == "dask"

    def memory_bytes(self) -> int:
        from dask.utils import parse_bytes

        try:
            n = int(parse_bytes(self.worker_memory))
        except (ValueError, TypeError) as e:
            raise ComputeError(
                f"dask_worker_memory must be a size such as 2GiB or 512MiB, "
                f"got {self.worker_memory!r}"
            ) from e
        if n <= 0:
            raise ComputeError(f"dask_worker_memory must be positive, got {self.worker_memory!r}")
        return n

    def threads_per_worker(self) -> int:
        return max(1, int(self.worker_cpu))
