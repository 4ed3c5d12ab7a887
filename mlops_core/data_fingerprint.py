"""A stable content hash of a table: the data fingerprint the registry keeps with a model version
(ingest's rows, or the feature store's training set)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd


def fingerprint(df: pd.DataFrame) -> str:
    """A stable content hash of a frame: column names, order, dtypes and every value."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()
