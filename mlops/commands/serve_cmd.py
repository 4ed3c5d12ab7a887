"""`mlops serve`: run the KServe predictor for one registered model version.

The serving container runs this same command (`mlops serve --model-dir /mnt/models --model NAME`).
"""

from __future__ import annotations

import logging
import sys

import typer

from mlops_core.settings import load_settings

app = typer.Typer(help="Serve a registered model (KServe V1/V2 + explain + /metrics).")
# KServe's own line format; KServe configures logging only when its server starts, after the
# start-up line (what is served, where, whether writes need a token) is logged.
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


@app.callback(invoke_without_command=True)
def serve(
    model: str | None = typer.Option(
        None, "--model", help="model name, also the URL path name (env MLOPS_MODEL_NAME)"
    ),
    version: str | None = typer.Option(
        None, "--version", help="N, 'champion' or 'latest' (env MLOPS_MODEL_VERSION)"
    ),
    port: int | None = typer.Option(None, "--port", help="HTTP port (env MLOPS_SERVE_PORT)"),
    host: str | None = typer.Option(
        None,
        "--host",
        help="address to bind: 127.0.0.1 by default; 0.0.0.0 to accept other hosts, as the "
        "container does (env MLOPS_SERVE_HOST)",
    ),
    registry: str | None = typer.Option(
        None, "--registry", help="registry URI (env MLOPS_REGISTRY_URI)"
    ),
    model_dir: str | None = typer.Option(
        None,
        "--model-dir",
        help="a version folder to serve instead of the registry, e.g. /mnt/models "
        "(env MLOPS_MODEL_DIR)",
    ),
    max_batch_rows: int | None = typer.Option(
        None, "--max-batch-rows", help="rows per request limit (env MLOPS_MAX_BATCH_ROWS)"
    ),
    unknown_category: str | None = typer.Option(
        None,
        "--unknown-category",
        help="'reject' (400) or 'unseen' (encode as unknown) (env MLOPS_UNKNOWN_CATEGORY)",
    ),
) -> None:
    """Start the model server on HOST:PORT; stops cleanly on SIGTERM.

    State-changing endpoints (label feedback) need 'Authorization: Bearer $MLOPS_API_TOKEN' when
    that variable is set; the model repository API stays off unless MLOPS_REPOSITORY_API=true.
    """
    settings = load_settings(
        model_name=model,
        model_version=version,
        serve_port=port,
        serve_host=host,
        registry_uri=registry,
        model_dir=model_dir,
        max_batch_rows=max_batch_rows,
        unknown_category=unknown_category,
    )
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    # kserve parses sys.argv when first imported; give it none of ours.
    sys.argv = sys.argv[:1]
    from serving.access_control import AccessPolicy
    from serving.monitoring.endpoints import build_monitoring
    from serving.server import load_model_for, request_limits, run_server

    request_limits(settings)  # checked before the model is loaded
    AccessPolicy.from_settings(settings)
    bundle = load_model_for(settings)
    monitoring = build_monitoring(bundle, settings)  # drift monitor, label store, prediction log
    run_server(bundle, settings, monitoring.observers)
