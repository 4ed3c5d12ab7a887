"""What an experiment refuses: a policy out of range, a step on an experiment that has ended."""

from __future__ import annotations

from mlops_core.errors import ConflictError, InvalidInputError, MlopsError


class ExperimentError(MlopsError):
    """An experiment cannot do what was asked."""


class ExperimentPolicyError(ExperimentError, InvalidInputError):
    """An experiment policy field is missing, of the wrong type or out of range."""


class ExperimentEnded(ExperimentError, ConflictError):
    """The experiment already ended; start a new one."""
