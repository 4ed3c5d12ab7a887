"""`make bench-scale`: the break-even arithmetic, and the figures in docs/scale.md are the
benchmark's JSON output, not typed by hand."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.bench_scale import DOCS_BEGIN, DOCS_END, OUT, break_even_rows, render_docs_table
from tests.upstream import ROOT


def test_break_even_is_where_the_start_is_repaid() -> None:
    # local 100 rows/s, dask 200 rows/s, 10 s to start: at 2,000 rows both take 20 s.
    rows = break_even_rows(10.0, 100.0, 200.0)
    assert rows == pytest.approx(2000.0)
    assert rows / 100.0 == pytest.approx(10.0 + rows / 200.0)
    assert break_even_rows(10.0, 200.0, 100.0) is None  # dask slower per row: never


def test_the_docs_show_the_benchmarks_own_figures() -> None:
    doc = json.loads((ROOT / OUT).read_text())
    text = (ROOT / "docs" / "scale.md").read_text()
    block = re.search(re.escape(DOCS_BEGIN) + r"\n(.*)\n" + re.escape(DOCS_END), text, re.S)
    assert block is not None, "docs/scale.md lost its bench-scale block"
    assert block.group(1) == render_docs_table(doc), "run `make bench-scale`"
    for name in ("local", "dask_1", "dask_2"):  # every figure the issue asks for is there
        assert doc["results"][name]["train_rows_per_s"] > 0
        assert doc["results"][name]["score_rows_per_s"] > 0
    assert len(doc["results"]["dask_2"]["worker_peak_mb"]) == 2
    assert doc["derived"]["start_s"] > 0
