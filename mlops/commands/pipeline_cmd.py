"""`mlops pipeline run --local` and `mlops pipeline compile`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from mlops_core.errors import MlopsError
from mlops_core.settings import load_settings
from pipelines.params import DeployParams, TrainingParams, default, help_for

app = typer.Typer(help="Run or compile the training pipeline.", no_args_is_help=True)
console = Console()


def _option(name: str, *flags: str, cls: type | None = None) -> Any:
    """A typer option whose default and help are the parameter's declaration in pipelines/params."""
    cls = cls or TrainingParams
    return typer.Option(default(cls, name), *flags, help=help_for(cls, name))


@app.command()
def run(
    local: bool = typer.Option(
        False, "--local", help="run with kfp.local on this machine (no cluster)"
    ),
    data_source: str = _option("data_source", "--data-source"),
    target: str = _option("target"),
    task: str = _option("task"),
    positive_class: str = _option("positive_class", "--positive-class"),
    schema_uri: str = _option("schema_uri", "--schema"),
    scenario: str = _option("scenario"),
    rows: int = _option("rows"),
    seed: int = _option("seed"),
    estimator: str = _option("estimator"),
    primary_metric: str = _option("primary_metric"),
    margin: float = _option("margin"),
    slice_column: str = _option("slice_column"),
    fail_on_drift: bool = _option("fail_on_drift", "--fail-on-drift"),
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
            "(on a cluster, upload pipelines/training.yaml to KFP)"
        )
    from pipelines.local_run import run_training_locally

    s = load_settings(registry_uri=registry, model_name=model, work_dir=work_dir)
    params = TrainingParams(
        data_source=data_source,
        target=target,
        task=task,
        positive_class=positive_class,
        schema_uri=schema_uri,
        scenario=scenario,
        rows=rows,
        seed=seed,
        estimator=estimator,
        primary_metric=primary_metric,
        margin=margin,
        slice_column=slice_column,
        fail_on_drift=fail_on_drift,
    )
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
    """Write the training pipeline's IR YAML (the committed copy is the default image's)."""
    from pipelines.training import GOLDEN_YAML, compile_pipeline

    path = compile_pipeline(output or GOLDEN_YAML, image=image)
    console.print(f"compiled {path}")


@app.command()
def submit(
    image: str = typer.Option(..., "--image", help="component image (make run: COMPONENT_IMAGE)"),
    serving_image: str = typer.Option(
        ..., "--serving-image", help="model server image (make run: SERVING_IMAGE)"
    ),
    host: str = typer.Option("http://localhost:8887", help="KFP API (port-forwarded ml-pipeline)"),
    ui: str = typer.Option("http://localhost:8888", help="KFP UI, for the printed run URL"),
    registry: str = typer.Option("s3://mlpipeline/registry", help="registry in the object store"),
    namespace: str = _option("namespace", cls=DeployParams),
    canary_percent: int = _option("canary_percent", cls=DeployParams),
    rows: int = _option("rows"),
    scenario: str = _option("scenario"),
) -> None:
    """Compile for IMAGE and run on KFP with the deploy step on: the champion ends up served."""
    from pipelines.submit import Submission, submit_training

    run = submit_training(
        Submission(
            host=host,
            component_image=image,
            serving_image=serving_image,
            registry_uri=registry,
            namespace=namespace,
            ui_url=ui,
            arguments={"canary_percent": canary_percent, "rows": rows, "scenario": scenario},
        )
    )
    console.print(f"submitted run {run.run_id}: {run.url}")
