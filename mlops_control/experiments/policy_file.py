"""An experiment policy file: YAML (or JSON) naming its `strategy` and that strategy's fields.

Checked in full before anything runs: an unknown strategy or field, or a value out of range, is
one error that names it.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from mlops_control.experiments.abn import ABnPolicy
from mlops_control.experiments.bandit import BanditPolicy
from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.experiments.guardrails import GuardrailPolicy
from mlops_control.experiments.shadow import ShadowPolicy

ExperimentPolicy = BanditPolicy | ABnPolicy | ShadowPolicy
STRATEGIES: dict[str, type[BanditPolicy] | type[ABnPolicy] | type[ShadowPolicy]] = {
    "bandit": BanditPolicy,
    "abn": ABnPolicy,
    "shadow": ShadowPolicy,
}


def _check_fields(what: str, cls: type, doc: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ExperimentPolicyError(f"unknown {what} fields {unknown}; known: {sorted(known)}")


def experiment_policy(doc: Any) -> ExperimentPolicy:
    if not isinstance(doc, dict):
        raise ExperimentPolicyError(f"an experiment policy is a mapping, got {type(doc).__name__}")
    rest = dict(doc)
    strategy = rest.pop("strategy", None)
    cls = STRATEGIES.get(str(strategy))
    if cls is None:
        raise ExperimentPolicyError(
            f"strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}"
        )
    _check_fields(f"{strategy} policy", cls, rest)
    _check_fields("guardrails", GuardrailPolicy, rest.get("guardrails") or {})
    if issubclass(cls, ShadowPolicy):
        try:
            return ShadowPolicy(**rest)
        except TypeError as e:
            raise ExperimentPolicyError(f"invalid shadow policy: {e}") from e
    return cls.from_dict(rest)


def load_experiment_policy(path: str | Path) -> ExperimentPolicy:
    p = Path(path)
    if not p.is_file():
        raise ExperimentPolicyError(f"experiment policy file {p} does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ExperimentPolicyError(
            f"experiment policy file {p} is not valid YAML/JSON: {e}"
        ) from e
    return experiment_policy(doc)
