"""Each pipeline parameter and its default is declared once (pipelines/params.py) and read by the
compiled pipeline, the CLI and the step functions alike."""

from __future__ import annotations

import inspect
from dataclasses import fields

import pytest
import yaml

from components.evaluate import evaluate_model, evaluate_step
from components.gate import decide, gate_step
from components.ingest import ingest
from components.validate import validate_step
from mlops.commands import pipeline_cmd
from pipelines.params import DeployParams, TrainingParams, pipeline_signature
from pipelines.training import GOLDEN_YAML, cluster_defaults

DECLARED = {f.name: f.default for cls in (TrainingParams, DeployParams) for f in fields(cls)}


def test_the_golden_pipeline_has_exactly_the_declared_parameters_and_defaults() -> None:
    spec = next(yaml.safe_load_all(GOLDEN_YAML.read_text()))
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {*DECLARED, "registry_uri", "model_name"}
    # The golden YAML is the cluster form: these few defaults are the cluster's, the rest declared.
    cluster = cluster_defaults()
    assert inputs["registry_uri"]["defaultValue"] == cluster["registry_uri"]
    for name, value in DECLARED.items():
        assert inputs[name]["defaultValue"] == cluster.get(name, value), name
    assert inputs["deploy"]["defaultValue"] is True


def test_unknown_default_overrides_are_refused() -> None:
    with pytest.raises(KeyError, match="regsitry_uri"):
        pipeline_signature({"regsitry_uri": "s3://x"})


def test_the_signature_follows_the_dataclass_types() -> None:
    sig = pipeline_signature()
    assert sig.parameters["rows"].annotation is int
    assert sig.parameters["margin"].annotation is float
    assert sig.parameters["fail_on_drift"].annotation is bool
    assert sig.parameters["registry_uri"].default is inspect.Parameter.empty


@pytest.mark.parametrize("command", [pipeline_cmd.run, pipeline_cmd.submit])
def test_cli_option_defaults_are_the_declared_ones(command) -> None:
    options = inspect.signature(command).parameters
    shared = [n for n in options if n in DECLARED]
    assert shared, "the command reads no pipeline parameter"
    for name in shared:
        given = options[name].default.default
        if isinstance(given, list):  # a repeatable option (--drop): the field joins its values
            given = ",".join(given)
        if given is not ...:  # a required option (serving_image)
            assert given == DECLARED[name], name


@pytest.mark.parametrize(
    "step", [ingest, evaluate_model, evaluate_step, decide, gate_step, validate_step]
)
def test_step_functions_declare_no_default_of_their_own(step) -> None:
    for name, p in inspect.signature(step).parameters.items():
        if name in DECLARED:
            assert p.default is inspect.Parameter.empty, f"{step.__name__}({name}=...)"


def test_for_step_fills_only_what_the_step_takes() -> None:
    args = TrainingParams(margin=0.1).for_step(decide, primary_metric="log_loss")
    assert args == {"margin": 0.1, "primary_metric": "log_loss"}


@pytest.mark.parametrize("name", ["run", "submit"])
def test_every_training_parameter_is_an_option_of_run_and_submit(name: str) -> None:
    import typer.main

    command = typer.main.get_command(pipeline_cmd.app).commands[name]  # type: ignore[attr-defined]
    options = {p.name: p for p in command.params}
    for f in fields(TrainingParams):
        assert f.name in options, f"mlops pipeline {name} lacks {f.name}"
    assert options["holdout_fraction"].opts == ["--holdout-fraction"]
    assert options["drop_columns"].opts == ["--drop"] and options["drop_columns"].multiple
    assert options["max_categories"].opts == ["--max-categories"]
    assert options["fail_on_leakage"].opts == ["--fail-on-leakage"]
    assert options["schema_uri"].opts == ["--schema"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"task": "regression", "estimator": "logistic_regression"}, "does not fit a regression"),
        ({"estimator": "random_forest"}, "unknown estimator 'random_forest'"),
        ({"holdout_fraction": 1.0}, r"holdout_fraction must be in \(0, 1\), got 1.0"),
        ({"max_categories": 0}, "max_categories must be at least 1, got 0"),
        ({"leakage_threshold": 0.4}, r"leakage_threshold must be in \(0.5, 1\], got 0.4"),
    ],
)
def test_parameters_that_no_step_could_use_are_refused_when_made(given, message) -> None:
    from mlops_core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message):
        TrainingParams(**given)
