"""The one place that turns errors into HTTP status codes, for every HTTP edge of the platform:
the model server (KServe's app), its monitoring routes and the local canary router.

Domain errors say what went wrong through the kinds in `mlops_core.errors`; this module decides
what that means on the wire (as KServe's `errors.py` and its exception handlers do), so a new
error needs no status of its own and no route decides a status by hand.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from mlops_core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    MlopsError,
    NotFoundError,
    TooLargeError,
    bounded_message,
)


class NotReady(Exception):
    """The server cannot answer yet (no model, no upstream to route to): a server-side state."""


class UpstreamFailed(Exception):
    """A proxied model server did not answer: a server-side fault of the hop behind this one."""


class MethodNotAllowed(InvalidInputError):
    """The route exists but not for this HTTP method (the answer names the allowed ones)."""


# Most specific first: TooLargeError is also InvalidInputError.
_STATUS_BY_KIND: tuple[tuple[type[BaseException], int], ...] = (
    (NotReady, 503),
    (UpstreamFailed, 502),
    (TooLargeError, 413),
    (MethodNotAllowed, 405),
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidInputError, 400),
)


def status_for(error: BaseException) -> int:
    """The HTTP status of an error: its kind's, 400 for any other user error, else 500."""
    for kind, status in _STATUS_BY_KIND:
        if isinstance(error, kind):
            return status
    return 400 if isinstance(error, MlopsError) else 500


def error_body(message: str, **extra: Any) -> bytes:
    """The JSON every error answer carries: `{"error": message}` (KServe's shape), plus extras."""
    return orjson.dumps({"error": bounded_message(message), **extra})


def error_response(error: BaseException) -> Response:
    return Response(
        error_body(str(error)), status_code=status_for(error), media_type="application/json"
    )


async def mlops_error_handler(_: Request, exc: Exception) -> Response:
    """FastAPI exception handler: any `MlopsError` a route raises becomes its status and message."""
    return error_response(exc)


async def send_error(
    send: Send, error: BaseException, headers: list[tuple[bytes, bytes]] | None = None
) -> int:
    """Answer a raw ASGI request with an error (for middleware and the router); returns the status."""
    status = status_for(error)
    body = error_body(str(error))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status
