"""The hook through which other parts of the platform see every successful prediction.

The live drift monitor and the label-feedback store implement `PredictionObserver`. The predictor
calls each observer synchronously after a prediction, on the request's path, so `observe` must be
cheap: copy what it needs into a buffer and do heavy work (statistics, I/O) elsewhere.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class PredictionObserver(Protocol):
    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
    ) -> None:
        """`rows`: validated model input (object array, schema order); one probability per row."""
        ...
