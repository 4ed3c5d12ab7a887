"""`mlops pipeline run --local`, `mlops pipeline submit` and `mlops pipeline compile`.

`run` and `submit` take every `TrainingParams` field as an option, generated from its
declaration in pipelines/params.py (type, default, help), so a new parameter is an option of both
with no edit here; this module only says how a few are spelled (`--schema`, `--drop`).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_CLUSTER_REGISTRY_URI, load_settings
from pipelines.params import DeployParams, TrainingParams, default, help_for

app = typer.Typer(help="Run or compile the training pipeline.", no_args_is_help=True)
console = Console()

# Flags other than --field-name; a repeatable flag's values are joined with "," into the field.
_FLAGS = {"schema_uri": "--schema", "drop_columns": "--drop"}
_REPEATABLE = {"drop_columns"}


def _option(name: str, *flags: str, cls: type | None = None) -> Any:
    """A typer option whose default and help are the parameter's declaration in pipelines/params."""
    cls = cls or TrainingParams
    return typer.Option(default(cls, name), *flags, help=help_for(cls, name))


def _field_option(f: Field[Any], annotation: Any) -> inspect.Parameter:
    flag = _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
    if f.name in _REPEATABLE:
        annotation = list[str]
        option = typer.Option(
            [c for c in str(f.default).split(",") if c],
            flag,
            metavar="COLUMN",
            help=help_for(TrainingParams, f.name),
        )
    else:
        option = _option(f.name, flag)
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


def training_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command(params: TrainingParams, ...)` as a typer command with its own options plus one
    per TrainingParams field; the values are checked (TrainingParams) before `command` runs."""
    hints = typing.get_type_hints(command)
    own = [
        p.replace(annotation=hints[p.name], kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(command).parameters.values()
        if p.name != "params"
    ]
    field_hints = typing.get_type_hints(TrainingParams)
    generated = [_field_option(f, field_hints[f.name]) for f in fields(TrainingParams)]

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        given = {f.name: values.pop(f.name) for f in fields(TrainingParams)}
        for name in _REPEATABLE:
            given[name] = ",".join(given[name])
        command(params=TrainingParams(**given), **values)

    parameters = [*own, *generated]
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


@app.command()
@training_options
def run(
    params: TrainingParams,
    local: bool = typer.Option(
        False, "--local", help="run with kfp.local on this machine (no cluster)"
    ),
    registry: str | None = typer.Option(
        None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]"
    ),
    model: str | None = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]"),
    work_dir: str | None = typer.Option(
        None, "--work-dir", help="where runs keep artifacts and logs [env MLOPS_WORK_DIR]"
    ),
) -> None:
    """Run ingest -> validate -> train -> evaluate -> gate -> register and print the decision."""
    if not local:
        raise MlopsError(
            "this command runs the pipeline locally only; pass --local "
            "(on a cluster: mlops pipeline submit, or upload pipelines/training.yaml to KFP)"
        )
    from pipelines.local_run import run_training_locally

    s = load_settings(registry_uri=registry, model_name=model, work_dir=work_dir)
    with console.status("running the training pipeline with kfp.local..."):
        result = run_training_locally(
            params, registry_uri=s.registry_uri, model_name=s.model_name, work_dir=s.work_dir
        )
    print_decision(console, result)


def print_decision(out: Console, result: dict) -> None:
    verdict = (
        "[green]promoted to champion[/green]" if result["promoted"] else "[yellow]kept[/yellow]"
    )
    table = Table(title=f"{result['model']} v{result['version']}: {verdict}", show_header=False)
    table.add_row("registry", result["uri"])
    if result.get("task_reason"):
        table.add_row("task", result["task_reason"])
    if result.get("target_missing_dropped"):
        table.add_row("dropped", f"{result['target_missing_dropped']} rows without a target value")
    for column, why in (result.get("set_aside") or {}).items():
        table.add_row("set aside", f"{column}: {why}")
    leakage = (result.get("validation") or {}).get("leakage_warning")
    if leakage:
        table.add_row("[yellow]warning[/yellow]", f"{leakage} (--fail-on-leakage fails the run)")
    table.add_row("champion now", f"v{result['champion']}")
    table.add_row(
        result["primary_metric"],
        f"{result['candidate']:.4f}"
        + (
            f" vs champion {result['champion_metric']:.4f}"
            if result["champion_metric"] is not None
            else ""
        ),
    )
    table.add_row("reasons", "\n".join(result["reasons"]))
    table.add_row("run", f"{result['run_id']} ({result['seconds']:.1f}s, {result['run_dir']})")
    out.print(table)


@app.command()
def compile(
    image: str | None = typer.Option(
        None, "--image", help="component image (default: mlops-platform/components:<version>)"
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="YAML path (default: pipelines/training.yaml)"
    ),
) -> None:
    """Write the training pipeline's IR YAML (the committed copy is the default image's), and,
    without --output, the batch scoring pipeline's (pipelines/batch_scoring.yaml) and the feature
    materialization pipeline's (pipelines/feature_materialization.yaml)."""
    from pipelines.batch_scoring import compile_batch_scoring
    from pipelines.feature_materialization import compile_materialization
    from pipelines.training import GOLDEN_YAML, compile_pipeline

    if output is not None:
        try:  # a new folder is made, as `-o build/x.yaml` in a fresh clone expects
            output.parent.mkdir(parents=True, exist_ok=True)
            output.touch()
        except OSError as e:
            raise MlopsError(f"cannot write {output}: {e.strerror or e}") from e
    path = compile_pipeline(output or GOLDEN_YAML, image=image)
    console.print(f"compiled {path}")
    if output is None:
        console.print(f"compiled {compile_batch_scoring(image=image)}")
        console.print(f"compiled {compile_materialization(image=image)}")


@app.command()
@training_options
def submit(
    params: TrainingParams,
    image: str = typer.Option(..., "--image", help="component image (make run: COMPONENT_IMAGE)"),
    serving_image: str = typer.Option(
        ..., "--serving-image", help="model server image (make run: SERVING_IMAGE)"
    ),
    host: str = typer.Option("http://localhost:8887", help="KFP API (port-forwarded ml-pipeline)"),
    ui: str = typer.Option("http://localhost:8888", help="KFP UI, for the printed run URL"),
    registry: str = typer.Option(DEFAULT_CLUSTER_REGISTRY_URI, help="registry in the object store"),
    model: str | None = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]"),
    namespace: str = _option("namespace", cls=DeployParams),
    canary_percent: int = _option("canary_percent", cls=DeployParams),
    wait: bool = typer.Option(
        False, "--wait", help="wait for the run to end; a run that fails exits non-zero"
    ),
    wait_timeout: float = typer.Option(3600, "--wait-timeout", help="seconds --wait waits", min=1),
) -> None:
    """Compile for IMAGE and run on KFP with the deploy step on: the champion ends up served."""
    from pipelines.submit import Submission, submit_training, wait_for_run

    model_name = load_settings(model_name=model).model_name
    run = submit_training(
        Submission(
            host=host,
            component_image=image,
            serving_image=serving_image,
            registry_uri=registry,
            namespace=namespace,
            ui_url=ui,
            arguments=params.arguments()
            | {"canary_percent": canary_percent, "model_name": model_name},
        )
    )
    console.print(f"submitted run {run.run_id}: {run.url}")
    if wait:
        done = wait_for_run(run, host=host, timeout_s=wait_timeout)
        console.print(f"run {done.run_id} {done.state.lower()} after {done.seconds:.0f} s")
