"""The dict form of a policy that holds a reward and guardrails (A/B/n test and bandit).

Flat fields as they are; `reward` and `guardrails` through their own dict forms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.experiments.guardrails import GuardrailPolicy
from mlops_control.experiments.reward import RewardSpec

P = TypeVar("P")
_NESTED = ("reward", "guardrails")


def policy_to_dict(policy: Any) -> dict[str, Any]:
    d = {k: v for k, v in policy.__dict__.items() if k not in _NESTED}
    return d | {"reward": policy.reward.to_dict(), "guardrails": policy.guardrails.to_dict()}


def policy_from_dict(cls: Callable[..., P], doc: dict[str, Any], what: str) -> P:
    try:
        rest = {k: v for k, v in doc.items() if k not in _NESTED}
        return cls(
            reward=RewardSpec.from_dict(doc["reward"]),
            guardrails=GuardrailPolicy(**doc.get("guardrails", {})),
            **rest,
        )
    except (KeyError, TypeError) as e:
        raise ExperimentPolicyError(f"invalid {what} policy: {e}") from e
