"""Rows of a DataFrame as a V1 request's `instances`: one JSON object per row.

Missing values (NaN, None) become JSON null, which the request validator treats as missing; pandas
hands back Python scalars, so the rows encode as they are. Every client of the platform (canary
traffic, the demo, the benchmarks, the tests) builds its V1 bodies with this one function.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def v1_instances(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: None if v is None or (isinstance(v, float) and v != v) else v for k, v in rec.items()}
        for rec in df.to_dict(orient="records")
    ]
