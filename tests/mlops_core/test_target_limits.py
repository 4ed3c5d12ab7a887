"""The number of classes is bounded (issue 25: a 70k-row, 10k-label run reached 6.4 GB): past the
documented default (`DEFAULT_MAX_CLASSES`, env MLOPS_MAX_CLASSES) the target is refused before
training, with a message naming the count and the limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components import ingest as ingest_module
from mlops_core.settings import DEFAULT_MAX_CLASSES, load_settings
from mlops_core.target import TargetError, settle_target
from pipelines.params import TrainingParams


def test_a_target_over_the_class_limit_is_refused() -> None:
    labels = pd.Series([f"sku-{i}" for i in range(DEFAULT_MAX_CLASSES + 1)] * 2)
    with pytest.raises(TargetError, match=r"1,001 distinct labels, over the limit of 1,000"):
        settle_target(labels, target="sku")
    at_limit = pd.Series([f"sku-{i}" for i in range(DEFAULT_MAX_CLASSES)] * 2)
    assert len(settle_target(at_limit, target="sku").classes) == DEFAULT_MAX_CLASSES
    assert settle_target(pd.Series(list("abc")), max_classes=3).task == "multiclass"


def test_ingest_reads_the_limit_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_MAX_CLASSES", "5")
    assert load_settings().max_classes == 5
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(size=300), "y": [f"c{i % 8}" for i in range(300)]})
    df.to_csv(tmp_path / "d.csv", index=False)
    out = {k: str(tmp_path / f"{k}.out") for k in ("train_path", "holdout_path", "schema_path")}
    given = {"data_source": str(tmp_path / "d.csv"), "target": "y", **out}
    with pytest.raises(TargetError, match="8 distinct labels, over the limit of 5"):
        ingest_module.ingest(**TrainingParams().for_step(ingest_module.ingest, **given))
