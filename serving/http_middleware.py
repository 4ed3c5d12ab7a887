"""ASGI middleware around the KServe app: request ids, version headers, body limit, request metrics.

Pure ASGI (not Starlette's BaseHTTPMiddleware) so it adds microseconds, not a task per request.
For every response it sets `x-model-version` and `x-request-id` (the client's, else a new uuid4
hex, also injected into the request headers so the model puts the same id in the body). Bodies
over the limit get 413: at once when Content-Length says so, else as soon as a chunked body
crosses it. A prediction route asked with another method than POST gets 405 with `Allow: POST`.
Prediction routes are counted and timed by protocol, endpoint and outcome.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import ClientDisconnect

from mlops_core.errors import NotFoundError, TooLargeError
from serving.http_errors import MethodNotAllowed, send_error
from serving.metrics import RequestMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_V1 = re.compile(r"^/v1/models/[^/]+:(predict|explain)$")
_V2 = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")
_VERSIONED = re.compile(r"^(/v2/models/[^/]+)/versions/([^/]+)(/.*)?$")
_OWN_HEADERS = frozenset({b"x-model-version", b"x-request-id"})
CLIENT_CLOSED_REQUEST = 499
_REQUEST_ID = re.compile(rb"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces, bounded


def route_of(path: str) -> tuple[str, str] | None:
    """(protocol, endpoint) of a prediction route, None for anything else."""
    m = _V1.match(path)
    if m:
        return "v1", m.group(1)
    if _V2.match(path):
        return "v2", "infer"
    return None


class BodyTooLarge(TooLargeError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is over this server's limit of {limit} bytes; send fewer rows per request"
        )


class VersionNotServed(NotFoundError):
    pass


def requested_version(scope: Scope) -> str | None:
    """The model version a V2 request names (`/versions/<v>/...` or `?model_version=<v>`), and
    strip it from the scope: this server holds one version, so a match serves as unversioned."""
    m = _VERSIONED.match(scope["path"])
    if m:
        scope["path"] = m.group(1) + (m.group(3) or "")
        scope["raw_path"] = scope["path"].encode()
        return m.group(2)
    query: bytes = scope.get("query_string", b"")
    if b"model_version" not in query:
        return None
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    versions = [v for k, v in pairs if k == "model_version"]
    if not versions:
        return None
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "model_version"]).encode()
    return versions[0]


class ServingMiddleware:
    def __init__(
        self, app: ASGIApp, *, model_version: str, max_body_bytes: int, metrics: RequestMetrics
    ) -> None:
        self.app = app
        self.version = model_version
        self.version_header = (b"x-model-version", model_version.encode())
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = requested_version(scope) if scope["path"].startswith("/v2/models/") else None
        route = route_of(scope["path"])
        request_id = b""
        length = -1
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                request_id = value
            elif key == b"content-length":
                length = int(value) if value.isdigit() else -1
        if not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex.encode()
            scope["headers"] = [
                *(h for h in scope["headers"] if h[0] != b"x-request-id"),
                (b"x-request-id", request_id),
            ]
        extra = [self.version_header, (b"x-request-id", request_id)]
        started = time.perf_counter()
        status = 500
        response_started = False
        too_large: BodyTooLarge | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if too_large is not None:
                # A chunked body crossed the limit inside the app, which turned our error into
                # its own answer (FastAPI: 400 "error parsing the body"); send the 413 instead.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    status = await send_error(send, too_large, [(b"connection", b"close"), *extra])
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                # KServe's V1 explain echoes the request's headers back; keep one of each of ours.
                kept = [h for h in message.get("headers", ()) if h[0] not in _OWN_HEADERS]
                message["headers"] = [*kept, *extra]
            await send(message)

        received = 0
        client_gone = False

        async def receive_bounded() -> Message:
            nonlocal received, client_gone, too_large
            message = await receive()
            if message["type"] == "http.disconnect":
                client_gone = True
            elif message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = BodyTooLarge(self.max_body_bytes)
                    raise too_large
            return message

        try:
            if asked is not None and asked != self.version:
                wrong = VersionNotServed(
                    f"this server holds model version {self.version}, not {asked!r}"
                )
                status = await send_error(send, wrong, extra)
                return
            if route is not None and scope["method"] != "POST":
                # Else KServe's GET /v1/models/{name} would take "churn:predict" for a model name.
                not_post = MethodNotAllowed(f"{scope['path']} takes POST, not {scope['method']}")
                status = await send_error(send, not_post, [(b"allow", b"POST"), *extra])
                return
            if length > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            await self.app(scope, receive_bounded, send_with_headers)
        except ClientDisconnect:
            # Nobody is left to answer; re-raising would only log a traceback for a client's act.
            client_gone = True
        except BodyTooLarge as e:
            if not response_started:
                # the unread body stays on the socket, so the connection cannot be reused
                status = await send_error(send, e, [(b"connection", b"close"), *extra])
        finally:
            if client_gone and status >= 500:
                # The client hung up mid-request: not a server fault, so not a 5xx (the canary's
                # error signal). 499 is nginx's "client closed request"; it counts as 4xx.
                status = CLIENT_CLOSED_REQUEST
            if route is not None:
                self.metrics.record(route[0], route[1], status, time.perf_counter() - started)
