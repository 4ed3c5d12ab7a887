"""The `mlops` command line: one entry point for the pipeline, registry, serving, canary and monitor.

Each command group lives in its own module under `mlops/commands/` and is registered here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from mlops.commands import (
    audit_cmd,
    batch_cmd,
    canary_cmd,
    dashboard_cmd,
    data_cmd,
    demo_cmd,
    experiment_cmd,
    features_cmd,
    monitor_cmd,
    pipeline_cmd,
    registry_cmd,
    serve_cmd,
)
from mlops_core.errors import MlopsError, bounded_message

app = typer.Typer(
    name="mlops",
    help="Kubernetes-native ML platform: train, register, serve, roll out and monitor models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def user_errors_as_red_line(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MlopsError as e:
            # One line, never wrapped at the terminal's width, and the message is not markup.
            err_console.print("[red]error:[/red]", escape(bounded_message(str(e))), soft_wrap=True)
            sys.exit(2)

    return wrapper


app.add_typer(registry_cmd.app, name="registry")
app.add_typer(serve_cmd.app, name="serve")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.add_typer(canary_cmd.app, name="canary")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(batch_cmd.app, name="batch")
app.add_typer(dashboard_cmd.app, name="dashboard")
app.add_typer(data_cmd.app, name="data")
app.add_typer(experiment_cmd.app, name="experiment")
app.add_typer(features_cmd.app, name="features")
app.command("audit")(audit_cmd.audit)
app.command("demo")(demo_cmd.demo)


def main() -> None:
    user_errors_as_red_line(app)()


if __name__ == "__main__":
    main()
