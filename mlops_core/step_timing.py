"""Time spent inside each pipeline step's plain function, for the pipeline benchmark.

When ``MLOPS_STEP_TIMINGS`` names a file, every `@timed_step` function appends one JSON line
(step, seconds) to it; otherwise the decorator costs one environment lookup. Child processes
started by kfp.local inherit the variable, so the benchmark sees the compute time of every task
and can attribute the rest of the wall time to orchestration.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from mlops_core.jsonl_log import read_json_lines

ENV_VAR = "MLOPS_STEP_TIMINGS"
P = ParamSpec("P")
R = TypeVar("R")


def timed_step(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            path = os.environ.get(ENV_VAR)
            if not path:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                line = json.dumps({"step": step, "seconds": time.perf_counter() - start})
                with open(path, "a") as fh:  # one short append per step: atomic enough
                    fh.write(line + "\n")

        return wrapper

    return decorate


def read_timings(path: str) -> list[dict[str, float | str]]:
    return list(read_json_lines(path))
