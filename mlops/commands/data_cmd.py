"""`mlops data sample`: the project's example data sets as CSV files, to train on without a
download (each is generated, so the same name, rows and seed give the same file).
`mlops data put`: copy a file to a URL (the cluster's object store), where a pipeline run reads it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from mlops_core.cars_data import generate_cars
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.errors import InvalidInputError

app = typer.Typer(
    help="Example data sets as CSV files; copy data to the object store.", no_args_is_help=True
)
console = Console()

# name -> (generator of `rows` rows from `seed`, target column, rows by default)
SAMPLES: dict[str, tuple[Callable[[int, int], pd.DataFrame], str, int]] = {
    "cars": (lambda rows, seed: generate_cars(rows, seed=seed), "mpg", 398),
    "churn": (lambda rows, seed: generate_churn(rows, seed=seed), CHURN_SCHEMA.target, 20000),
}


@app.command()
def sample(
    name: str = typer.Argument(..., help=f"one of {', '.join(SAMPLES)}"),
    output: Path = typer.Option(..., "--output", "-o", help="the CSV file to write"),
    rows: int = typer.Option(0, "--rows", help="rows to generate (0: the data set's own count)"),
    seed: int = typer.Option(0, "--seed", help="generator seed"),
) -> None:
    """Write the example data set NAME to a CSV file and say which column is its target."""
    if name not in SAMPLES:
        raise InvalidInputError(f"no example data set {name!r}; choose one of {list(SAMPLES)}")
    if rows < 0:
        raise InvalidInputError(f"--rows must be 0 or more, got {rows}")
    if not output.parent.is_dir():
        raise InvalidInputError(f"folder {output.parent} does not exist")
    generate, target, default_rows = SAMPLES[name]
    df = generate(rows or default_rows, seed)
    df.to_csv(output, index=False)
    console.print(f"wrote {len(df)} rows of {name} to {output} (target column: {target})")


@app.command()
def put(
    source: Path = typer.Argument(..., help="a file on this machine"),
    destination: str = typer.Argument(..., help="where to copy it: a URL such as s3://bucket/key"),
) -> None:
    """Copy SOURCE to DESTINATION (s3:// reads AWS_ENDPOINT_URL and the AWS_* credentials;
    `make store CMD=...` sets them for the cluster's store)."""
    import fsspec

    if not source.is_file():
        raise InvalidInputError(f"{source} is not a file")
    if "://" not in destination:
        raise InvalidInputError(f"{destination!r} is not a URL (s3://bucket/key, ...)")
    fs, path = fsspec.core.url_to_fs(destination)
    fs.put_file(str(source), path)
    size = fs.size(path)
    console.print(f"put {source} ({size} bytes) at {destination}", soft_wrap=True)
