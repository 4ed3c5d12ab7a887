"""`make bench-experiments`, small and seeded: the issue's targets hold, and the figures in
docs/experiments.md are the benchmark's JSON output, not typed by hand."""

from __future__ import annotations

import json
import re

from benchmarks.bench_experiments import (
    DOCS_BEGIN,
    DOCS_END,
    OUT,
    Scenario,
    render_docs_table,
    run,
)
from tests.upstream import ROOT


def test_a_small_seeded_run_meets_the_targets() -> None:
    result = run(runs=4, false_winner_runs=40, scenario=Scenario(horizon=150))
    ratios, regret = result["ratios"], result["regret"]
    # labels come after 30% of the horizon: the bandit loses at most half the fixed split's reward
    assert ratios["bandit_regret_vs_fixed"] <= 0.5, ratios
    # it learns from matured labels what a bandit counting unlabelled as failure does not
    assert regret["bandit"]["regret"] < regret["bandit_unlabelled_failure"]["regret"]
    assert regret["bandit"]["winner_correct_share"] == 1.0
    assert result["false_winner"]["winners_declared"] == 0  # target: at most 1%
    assert ratios["min_percent_over_floor"] >= 1.0  # no arm below its floor, ever
    # the comparison is over the same traffic: the fixed split keeps its shares exactly
    assert regret["fixed"]["min_percent"] == round(100 / 3, 2)


def test_the_docs_show_the_benchmarks_own_figures() -> None:
    result = json.loads((ROOT / OUT).read_text())
    text = (ROOT / "docs" / "experiments.md").read_text()
    block = re.search(re.escape(DOCS_BEGIN) + r"\n(.*)\n" + re.escape(DOCS_END), text, re.S)
    assert block is not None, "docs/experiments.md lost its bench-experiments block"
    assert block.group(1) == render_docs_table(result), "run `make bench-experiments`"
    # and the committed figures meet the targets
    assert result["ratios"]["bandit_regret_vs_fixed"] <= 0.5
    assert result["ratios"]["false_winner_rate"] <= 0.01
    assert result["ratios"]["min_percent_over_floor"] >= 1.0
    assert result["ratios"]["bandit_regret_vs_unlabelled_as_failure"] < 1.0
