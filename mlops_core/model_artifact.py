"""Load a model artifact safely: check its sha256, then the types it contains, then build it.

skops never unpickles: it rebuilds objects from a description and refuses any type it does not
trust, and `get_untrusted_types` lists those before anything is built. skops itself trusts the
scikit-learn estimators and plain containers; everything else a registered model needs is named
below, one type at a time. No module is trusted wholesale: `numpy.vectorize(builtins.exec)` is
two types a prefix rule like "numpy." + "builtins." would have let through, and calling that
model on a string would execute it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import fsspec

from mlops_core.errors import MlopsError

# The types beyond skops' own defaults that the platform's estimators serialise to (the names in
# mlops_core/estimators.py, for binary, multiclass and regression targets). A new estimator that needs
# another type fails `tests/mlops_core/test_model_artifact.py` until it is added here, by name.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
    }
)


class IntegrityError(MlopsError):
    """A model artifact does not match its record, or holds types outside the allow-list."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def refused_types(blob: bytes) -> list[str]:
    """The types in a skops file that neither skops nor `TRUSTED_TYPES` trusts (nothing is built)."""
    import skops.io as sio  # here, not at the top: registering a model does not need it (~1s)

    return sorted(t for t in sio.get_untrusted_types(data=blob) if t not in TRUSTED_TYPES)


def load_artifact(path: str, expected_sha256: str | None = None) -> Any:
    """Load a skops model file after checking its digest and the types it contains."""
    with fsspec.open(path, "rb") as fh:
        blob = fh.read()
    digest = hashlib.sha256(blob).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise IntegrityError(
            f"artifact {path} has sha256 {digest}, but the registry recorded {expected_sha256}; "
            "the file was modified after registration. Re-register the model or roll back."
        )
    try:
        refused = refused_types(blob)
    except Exception as e:  # skops raises several kinds on a file that is not a skops archive
        raise IntegrityError(f"artifact {path} is not a readable skops file: {e}") from e
    if refused:
        raise IntegrityError(
            f"artifact {path} contains types outside the allow-list: {refused}; nothing from it "
            "was run. A model needing a new type must be added to TRUSTED_TYPES in "
            "mlops_core/model_artifact.py by name"
        )
    import skops.io as sio

    return sio.loads(blob, trusted=sorted(TRUSTED_TYPES))
