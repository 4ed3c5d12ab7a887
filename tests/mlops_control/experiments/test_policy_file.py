from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlops_control.experiments.abn import ABnPolicy
from mlops_control.experiments.bandit import BanditPolicy
from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.experiments.policy_file import experiment_policy, load_experiment_policy
from mlops_control.experiments.shadow import ShadowPolicy
from tests.upstream import ROOT


def docs_policies() -> list[str]:
    text = (ROOT / "docs" / "experiments.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_every_policy_in_the_docs_loads(tmp_path: Path) -> None:
    kinds = []
    for i, block in enumerate(docs_policies()):
        path = tmp_path / f"policy-{i}.yaml"
        path.write_text(block)
        kinds.append(type(load_experiment_policy(path)))
    assert kinds == [BanditPolicy, ABnPolicy, ShadowPolicy]


def test_the_docs_bandit_policy_prices_a_missed_churner() -> None:
    policy = experiment_policy(yaml.safe_load(docs_policies()[0]))
    assert isinstance(policy, BanditPolicy)
    assert policy.reward.kind == "table" and policy.reward.matrix()[1, 0] == -5.0


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"strategy": "canary"}, "strategy must be one of"),
        (
            {"strategy": "shadow", "task": "binary", "mirror": 5},
            r"unknown shadow policy fields \['mirror'\]",
        ),
        (
            {"strategy": "bandit", "reward": {"task": "regression"}, "guardrails": {"errors": 1}},
            r"unknown guardrails fields \['errors'\]",
        ),
        (
            {"strategy": "abn", "reward": {"task": "regression"}, "shares": {"a": 60, "b": 60}},
            "sum to 100",
        ),
        ([1, 2], "is a mapping"),
    ],
)
def test_a_bad_policy_is_one_error_that_names_the_problem(doc: object, match: str) -> None:
    with pytest.raises(ExperimentPolicyError, match=match):
        experiment_policy(doc)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ExperimentPolicyError, match="does not exist"):
        load_experiment_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: [unclosed\n")
    with pytest.raises(ExperimentPolicyError, match="not valid YAML"):
        load_experiment_policy(bad)
