"""Build and run the model server: `kserve.ModelServer` plus the project's middleware and routes.

KServe keeps one module-level FastAPI app; its routes, exception handlers and timing middleware are
attached when the server starts. Everything added here (our middleware, the 400 mapping for
request-body validation errors, extra routers) is attached to that same app first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from mlops_core.errors import InvalidInputError, MlopsError
from mlops_core.settings import Settings
from serving.access_control import AccessControl, AccessPolicy
from serving.feature_lookup import FeatureSource
from serving.http_errors import error_response, mlops_error_handler
from serving.http_middleware import ServingMiddleware
from serving.log_escaping import escape_server_logs
from serving.model_bundle import ModelBundle, load_bundle, load_registered
from serving.prediction_observer import PredictionObserver
from serving.predictor import ChurnPredictor
from serving.request_validation import RequestLimits, wrong_body_shape
from serving.routes import extra_routers

logger = logging.getLogger(__name__)


def request_limits(settings: Settings) -> RequestLimits:
    """The request limits the settings ask for; checked at start-up, naming the bad setting."""
    try:
        return RequestLimits(
            max_rows=settings.max_batch_rows, unknown_category=settings.unknown_category
        )
    except ValueError as e:
        raise InvalidInputError(f"invalid serving settings: {e}") from e


def load_model_for(settings: Settings) -> ModelBundle:
    """The version to serve: `model_dir` (KServe's /mnt/models) if set, else the registry."""
    if settings.model_dir:
        return load_bundle(settings.model_dir)
    return load_registered(settings.registry_uri, settings.model_name, settings.model_version)


def _field_path(loc: Sequence[object]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def request_validation_error(_: Request, exc: Exception) -> Response:
    """FastAPI's body parsing errors (V2 requests) as a 400 in KServe's error format."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        loc = err.get("loc", ())
        if loc and loc[0] in ("query", "path", "header"):
            # Not the body: name the parameter (`/drift?history=abc` was answered about V2 inputs).
            given = str(err.get("input", ""))[:100]
            name = _field_path(loc[1:])
            problems.append(f"{loc[0]} parameter {name!r}: {err.get('msg')}, got {given!r}")
            continue
        if len(err.get("loc", ())) <= 2 and not isinstance(err.get("input", {}), dict | bytes):
            # The body itself is valid JSON of the wrong kind (an array, a number): say so.
            return error_response(InvalidInputError(wrong_body_shape(err["input"], "inputs")))
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            problems.append(f"malformed JSON: {detail}".rstrip(": "))
        else:
            problems.append(f"{_field_path(err.get('loc', ()))}: {err.get('msg', 'invalid')}")
    where = "request" if problems and all(" parameter " in p for p in problems) else "request body"
    return error_response(InvalidInputError(f"invalid {where}: " + "; ".join(problems)))


MAX_LOGGED_REASON = 200  # characters of a client-caused message that reach the log


class ClientErrorTracebacks(logging.Filter):
    """KServe logs every refused request (400) and unknown model (404) at ERROR with a traceback
    (~1.3 kB each: any client could flood the log); a client's mistake is not a server error, so
    keep one short line at INFO (the response body already tells the client what is wrong)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from kserve.errors import InvalidInput, ModelNotFound
        from starlette.requests import ClientDisconnect

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InvalidInput | ModelNotFound):
            # The reason can quote the client's input (a model name from the URL): bounded.
            reason = str(exc)[:MAX_LOGGED_REASON]
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args, record.exc_info = f"refused request: {reason}", (), None
        elif isinstance(exc, ClientDisconnect):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "client disconnected before sending the whole body", ()
            record.exc_info = None
        return True


def _malformed_json_message(body: object) -> str | None:
    if not isinstance(body, bytes | str):
        return None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as e:
        hint = " (NaN and Infinity are not JSON; send null for a missing value)"
        return f"malformed JSON: {e}{hint if b'NaN' in body or b'Infinity' in body else ''}"
    return None


def _parsed_as_json(headers: dict[str, str]) -> bool:
    """Whether FastAPI decoded a body with these headers as JSON (an application/json or
    application/*+json content-type; with none, its strict default leaves the bytes raw)."""
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    main, _, sub = content_type.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def project_dataplane(model_registry: object) -> object:
    """KServe's DataPlane, with V1 JSON errors worded like every other 400 this server sends."""
    from kserve.errors import InvalidInput
    from kserve.model import InferenceVerb
    from kserve.protocol.dataplane import DataPlane

    class ProjectDataPlane(DataPlane):
        async def explain(self, model_name, request, headers=None):
            # KServe's explain starts its response headers from the request's, so every request
            # header (cookies, tokens) came back in the answer; keep only what the model sets.
            model = await self.get_model(model_name)
            response, model_headers = await model(
                request, verb=InferenceVerb.EXPLAIN, headers=headers
            )
            return response, dict(model_headers or {})

        def decode(self, body, headers, *args, **kwargs):
            v2 = kwargs.get("protocol_version", args[0] if args else "") == "v2"
            if v2 and isinstance(body, bytes) and _parsed_as_json(headers or {}):
                # FastAPI parsed the body as JSON and pydantic turned a JSON string into these
                # bytes (the V2 body is `InferenceRequest | bytes`): a string, not bad JSON.
                raise InvalidInput(wrong_body_shape(body.decode("utf-8", "replace"), "inputs"))
            try:
                return super().decode(body, headers, *args, **kwargs)
            except InvalidInput as e:
                message = _malformed_json_message(body)
                if message is None:
                    raise
                raise InvalidInput(message) from e

    return ProjectDataPlane(model_registry=model_registry)


def attach(app: FastAPI, predictor: ChurnPredictor, settings: Settings) -> None:
    """Add the project's middleware, error mapping and extra routes to KServe's app."""
    app.add_middleware(
        ServingMiddleware,
        model_version=predictor.version,
        max_body_bytes=settings.max_body_bytes,
        metrics=predictor.request_metrics,
    )
    # Added last, so it runs first: a refused request costs no body read and no metric.
    app.add_middleware(
        AccessControl, policy=AccessPolicy.from_settings(settings), ready=lambda: predictor.ready
    )
    app.add_exception_handler(RequestValidationError, request_validation_error)
    app.add_exception_handler(MlopsError, mlops_error_handler)
    for router in extra_routers(predictor):
        app.include_router(router)


def build_predictor(
    bundle: ModelBundle, settings: Settings, observers: Sequence[PredictionObserver] = ()
) -> ChurnPredictor:
    predictor = ChurnPredictor(
        settings.model_name,
        bundle,
        limits=request_limits(settings),
        threshold=settings.decision_threshold,
        observers=observers,
        batch_rows=settings.batch_rows,
        fast_path=settings.fast_path,
        feature_source=(
            FeatureSource(settings.feature_server_url, bundle.schema.feature_names)
            if settings.feature_server_url
            else None
        ),
    )
    predictor.load()
    return predictor


def run_server(
    bundle: ModelBundle, settings: Settings, observers: Sequence[PredictionObserver] = ()
) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn drains in-flight requests, then the process exits)."""
    # Imported here: kserve.model_server parses sys.argv at import time; the CLI clears it first.
    from kserve import ModelServer
    from kserve import model_server as kserve_model_server

    predictor = build_predictor(bundle, settings, observers)
    attach(kserve_model_server.app, predictor, settings)
    # The loaded model is long-lived: move it out of the collector's reach so full collections
    # (which otherwise walk every tree node object on each pass) stop adding tail latency.
    gc.collect()
    gc.freeze()
    # The model thread runs Python-heavy scikit-learn code; a shorter GIL switch interval lets the
    # event loop read and answer requests while a batch is being scored (default: 5 ms).
    sys.setswitchinterval(0.001)

    async def announce_once_listening(rest_server: Any) -> None:
        # The start-up line means "send requests now": a client that reads it and connects at
        # once must be answered. uvicorn's Server.started turns True once its socket is bound
        # (KServe's RESTServer keeps that Server in `_server`).
        while not rest_server._server.started:
            await asyncio.sleep(0.05)
        logger.info(
            "serving %s version %s from %s on %s:%d (write endpoints %s)",
            settings.model_name,
            predictor.version,
            bundle.source,
            settings.serve_host,
            settings.serve_port,
            "need a bearer token" if settings.api_token else "are open: set MLOPS_API_TOKEN",
        )

    class BoundModelServer(ModelServer):
        # KServe's RESTServer binds 0.0.0.0 with no option; its uvicorn config is read only when
        # serving starts, so the host is set between `start` building it and `_serve` running it.
        async def _serve(self) -> None:
            announcing = []  # holds the task: the loop keeps only a weak reference
            if self._rest_server is not None:
                self._rest_server.config.host = settings.serve_host
                announcing.append(asyncio.create_task(announce_once_listening(self._rest_server)))
            await super()._serve()

    server = BoundModelServer(
        http_port=settings.serve_port,
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
        grace_period=10,
    )
    server.dataplane = project_dataplane(server.registered_models)
    logging.getLogger("kserve").addFilter(ClientErrorTracebacks())
    escape_server_logs()  # after KServe set up its handlers: a URL cannot forge a log line
    if not settings.api_token:
        logger.warning(
            "the write endpoints (label feedback, and any request that is not a GET outside the "
            "prediction routes) are open to anyone who reaches %s:%d: set MLOPS_API_TOKEN to "
            "require a bearer token",
            settings.serve_host,
            settings.serve_port,
        )
    if not settings.access_log:
        # uvicorn's access line and KServe's two timing lines per request cost more than the
        # request's own work at 1-row sizes; /metrics carries the same counts and latencies.
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start([predictor])
