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
        if options[name].default.default is not ...:  # a required option (serving_image)
            assert options[name].default.default == DECLARED[name], name


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
