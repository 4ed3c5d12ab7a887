"""The hook through which other parts of the platform see every successful prediction.

The live drift monitor and the label-feedback store implement `PredictionObserver`. The predictor
calls each observer synchronously after a prediction, on the request's path, so `observe` must be
cheap: copy what it needs into a buffer and do heavy work (statistics, I/O) elsewhere.

A request marked with `SHADOW_HEADER` is a copy the platform's tee sent to a shadow version: it is
answered but not observed (no prediction log line, no label waiting, no drift or prediction
statistics), so mirrored traffic never counts as the version's live traffic; the tee records the
pair of answers itself.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

SHADOW_HEADER = "x-mlops-shadow"


def is_shadow_request(headers: dict[str, str] | None) -> bool:
    return bool((headers or {}).get(SHADOW_HEADER))


@runtime_checkable
class PredictionObserver(Protocol):
    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
        features_used: list[dict[str, Any]] | None = None,
    ) -> None:
        """`rows`: validated model input (object array, schema order); one probability per row.
        `features_used`: for a request by entity key, each row's key and the values the feature
        store gave it (the same values as `rows`, by name); None when the client sent them."""
        ...
