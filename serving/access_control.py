"""Who may call what on the model server: the one ASGI gate in front of KServe's routes.

- Prediction (`:predict`, `:explain`, `/infer`), health, metadata and `/metrics` are open: the
  gateway in front of the pod decides who reaches them (and a NetworkPolicy admits only the
  gateway and Prometheus to the pod).
- Every other request that can change state (any method but GET/HEAD/OPTIONS: label feedback,
  the model repository) needs `Authorization: Bearer <token>` when a token is configured.
- KServe's model repository API (`/v2/repository/...`: load/unload) answers 404 unless enabled,
  and enabling it without a token is refused at start-up: unloading the model is a denial of
  service.
- `/v2/health/ready` answers 503 while the model cannot serve (KServe's answers 200 regardless).

Statuses come from `serving.http_errors` through the error kinds; nothing here picks a number.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from mlops_core.errors import AuthenticationError, InvalidInputError, NotFoundError
from mlops_core.settings import Settings
from serving.http_errors import NotReady, send_error
from serving.http_middleware import ASGIApp, Receive, Scope, Send, route_of
from serving.log_escaping import escape_control, has_control

logger = logging.getLogger(__name__)

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_REPOSITORY = re.compile(r"^/v2/repository(?:/|$)")
_SERVER_READY = "/v2/health/ready"


class RepositoryApiDisabled(NotFoundError):
    pass


class MissingCredentials(AuthenticationError):
    pass


class ModelNotServing(NotReady):
    pass


@dataclass(frozen=True)
class AccessPolicy:
    """Serving's access settings: the bearer token for writes and the repository API switch."""

    api_token: str = ""
    repository_api: bool = False

    def __post_init__(self) -> None:
        if self.repository_api and not self.api_token:
            raise InvalidInputError(
                "the model repository API (load/unload) can take the model down, so it needs a "
                "token: set MLOPS_API_TOKEN (or leave MLOPS_REPOSITORY_API off)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(api_token=settings.api_token, repository_api=settings.repository_api)

    def authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if not self.api_token:
            return True
        expected = b"bearer " + self.api_token.encode()
        for key, value in headers:
            if key == b"authorization":
                # Scheme case-insensitive (RFC 6750), token compared in constant time.
                given = value[:7].lower() + value[7:]
                return hmac.compare_digest(given, expected)
        return False


class AccessControl:
    """ASGI middleware applying an `AccessPolicy`; `ready()` says whether the model can serve."""

    def __init__(self, app: ASGIApp, *, policy: AccessPolicy, ready: Callable[[], bool]) -> None:
        self.app = app
        self.policy = policy
        self.ready = ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        error = self._refusal(path, method, scope["headers"])
        if error is not None:
            extra = (
                [(b"www-authenticate", b"Bearer")] if isinstance(error, MissingCredentials) else []
            )
            await send_error(send, error, extra)
            return
        await self.app(scope, receive, send)

    def _refusal(
        self, path: str, method: str, headers: list[tuple[bytes, bytes]]
    ) -> Exception | None:
        if has_control(path):
            # A newline in a model name would forge lines in every log that prints the path.
            return InvalidInputError(
                f"the request path holds a control character: {escape_control(path)[:200]}"
            )
        if _REPOSITORY.match(path) and not self.policy.repository_api:
            return RepositoryApiDisabled(
                f"{path} is not served: the model repository API is off "
                "(MLOPS_REPOSITORY_API=true and a token turn it on)"
            )
        if method in _READ_METHODS:
            if path == _SERVER_READY and not self.ready():
                return ModelNotServing("the model is not loaded, so this server cannot serve")
            return None
        if route_of(path) is not None:  # predictions are reads of the model, open by design
            return None
        if not self.policy.authorised(headers):
            return MissingCredentials(
                f"{method} {path} changes the server's state and needs "
                "'Authorization: Bearer <token>' (the token in MLOPS_API_TOKEN)"
            )
        return None
