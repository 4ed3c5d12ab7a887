"""The local traffic router: the laptop stand-in for Knative's traffic split on the cluster.

A small ASGI app (run by uvicorn) in front of two local model servers, stable and canary. Each
request goes to the canary with probability `canary_percent`/100 (weighted random choice, as the
cluster ingress splits by revision weight), and the upstream's response, with its
`x-model-version` and `x-request-id` headers, is passed back; `x-routed-to` says which side served
it. Like Knative, the router owns the servers: routing a version starts `mlops serve` for it,
taking a version out of the route stops its server.

Admin API (JSON), used by the local actuator and `mlops canary`:
  GET  /router/state                       versions, URLs, weights, counts
  PUT  /router/canary   {"version", "percent"} start the canary's server and route `percent` to it
  PUT  /router/weights  {"canary_percent"} move traffic
  POST /router/promote                     the canary becomes the stable; the old stable stops
  POST /router/rollback                    all traffic to the stable; the canary stops
Everything else is proxied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_core.errors import ConflictError, InvalidInputError, MlopsError, NotFoundError
from mlops_core.registry import ModelRegistry, RegistryError
from serving.canary.model_server_process import ModelServerError, ModelServerProcess
from serving.http_errors import NotReady, UpstreamFailed, send_error

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Hop-by-hop headers are the connection's, not the message's (RFC 9110 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class RouterConfig:
    model: str
    registry_uri: str
    log_dir: Path
    server_env: dict[str, str] = field(default_factory=dict)
    upstream_timeout_s: float = 30.0


class RouterError(MlopsError):
    """An admin request the router refuses, with the reason."""


class BadAdminRequest(RouterError, InvalidInputError):
    pass


class UnknownAdminTarget(RouterError, NotFoundError):
    """An admin route or a model version that does not exist."""


class RouterStateConflict(RouterError, ConflictError):
    """Valid, but not now: a canary already running, none to promote, a server that did not start."""


class TrafficRouter:
    def __init__(self, config: RouterConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.stable: ModelServerProcess | None = None
        self.canary: ModelServerProcess | None = None
        self.canary_percent = 0
        self.counts = {"stable": 0, "canary": 0, "upstream_errors": 0}
        self.rng = rng or random.Random()
        self.client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, stable_version: str) -> None:
        self.client = httpx.AsyncClient(
            timeout=self.config.upstream_timeout_s,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.stable = await self._spawn(stable_version)

    async def shutdown(self) -> None:
        servers, self.canary, self.stable = (self.canary, self.stable), None, None
        for server in servers:
            if server is not None:
                await asyncio.to_thread(server.stop)
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()

    async def _spawn(self, version: str) -> ModelServerProcess:
        c = self.config
        server = ModelServerProcess.spawn(c.model, version, c.registry_uri, c.log_dir, c.server_env)
        await server.wait_ready()
        return server

    # --- admin ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        def side(s: ModelServerProcess | None) -> dict[str, str] | None:
            return None if s is None else {"version": s.version, "url": s.url}

        return {
            "model": self.config.model,
            "stable": side(self.stable),
            "canary": side(self.canary),
            "canary_percent": self.canary_percent,
            "counts": dict(self.counts),
        }

    @staticmethod
    def _percent(doc: dict[str, Any], key: str) -> int:
        value = doc.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            raise BadAdminRequest(f"{key!r} must be an integer percentage 0..100, got {value!r}")
        return value

    async def set_canary(self, doc: dict[str, Any]) -> dict[str, Any]:
        version = str(doc.get("version", "")).strip()
        if not version:
            raise BadAdminRequest("'version' (the registered model version to start) is required")
        percent = self._percent(doc, "percent")
        async with self._lock:
            if self.canary is not None:
                raise RouterStateConflict(
                    f"version {self.canary.version} is already the canary; promote or roll it "
                    "back first"
                )
            if self.stable is not None and self.stable.version == version:
                raise RouterStateConflict(f"version {version} is already the stable version")
            try:  # a clear answer now rather than a server that fails to start
                ModelRegistry(self.config.registry_uri).get(self.config.model, version)
            except RegistryError as e:
                raise UnknownAdminTarget(str(e)) from e
            try:
                canary = await self._spawn(version)
            except ModelServerError as e:
                raise RouterStateConflict(f"the canary's model server did not start: {e}") from e
            self.canary, self.canary_percent = canary, percent
        return self.state()

    async def set_weights(self, doc: dict[str, Any]) -> dict[str, Any]:
        percent = self._percent(doc, "canary_percent")
        if self.canary is None and percent:
            raise RouterStateConflict("there is no canary to send traffic to")
        self.canary_percent = percent
        return self.state()

    async def promote(self) -> dict[str, Any]:
        async with self._lock:
            if self.canary is None:
                raise RouterStateConflict("there is no canary to promote")
            old, self.stable, self.canary = self.stable, self.canary, None
            self.canary_percent = 0
        if old is not None:
            await asyncio.sleep(0.5)  # let requests already sent to it finish
            await asyncio.to_thread(old.stop)
        return self.state()

    async def rollback(self) -> dict[str, Any]:
        async with self._lock:
            if self.canary is None:
                raise RouterStateConflict("there is no canary to roll back")
            old, self.canary = self.canary, None
            self.canary_percent = 0
        await asyncio.sleep(0.5)
        await asyncio.to_thread(old.stop)
        return self.state()

    # --- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        path, method = scope["path"], scope["method"]
        if path.startswith("/router/"):
            await self._admin(method, path, body, send)
        else:
            await self._proxy(scope, body, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _admin(self, method: str, path: str, body: bytes, send: Send) -> None:
        routes: dict[tuple[str, str], Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            ("PUT", "/router/canary"): self.set_canary,
            ("PUT", "/router/weights"): self.set_weights,
            ("POST", "/router/promote"): lambda _: self.promote(),
            ("POST", "/router/rollback"): lambda _: self.rollback(),
        }
        try:
            if (method, path) == ("GET", "/router/state"):
                await _json(send, 200, self.state())
                return
            handler = routes.get((method, path))
            if handler is None:
                raise UnknownAdminTarget(f"no admin route {method} {path}")
            try:
                doc = json.loads(body or b"{}")
            except ValueError as e:
                raise BadAdminRequest(f"request body is not JSON: {e}") from e
            if not isinstance(doc, dict):
                raise BadAdminRequest("request body must be a JSON object")
            await _json(send, 200, await handler(doc))
        except RouterError as e:
            await send_error(send, e)

    async def _proxy(self, scope: Scope, body: bytes, send: Send) -> None:
        to_canary = self.canary is not None and self.rng.random() * 100 < self.canary_percent
        role = "canary" if to_canary else "stable"
        upstream = self.canary if to_canary else self.stable
        if upstream is None or self.client is None:
            await send_error(send, NotReady("the router has no stable version yet"))
            return
        url = upstream.url + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        try:
            r = await self.client.request(scope["method"], url, headers=headers, content=body)
        except httpx.HTTPError as e:
            self.counts["upstream_errors"] += 1
            failed = UpstreamFailed(f"{role} upstream {upstream.url} failed: {e!r}")
            await send_error(send, failed, [(b"x-routed-to", role.encode())])
            return
        self.counts[role] += 1
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in r.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        out.append((b"x-routed-to", role.encode()))
        out.append((b"content-length", str(len(r.content)).encode()))
        await send({"type": "http.response.start", "status": r.status_code, "headers": out})
        await send({"type": "http.response.body", "body": r.content})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run_router(config: RouterConfig, stable_version: str, host: str, port: int) -> None:
    """Start the stable version's server, then serve the router until SIGTERM/SIGINT."""
    import uvicorn

    router = TrafficRouter(config)

    async def main() -> None:
        server = uvicorn.Server(
            uvicorn.Config(router, host=host, port=port, log_level="warning", lifespan="on")
        )
        # uvicorn re-raises SIGTERM after its graceful shutdown (exit -15); a router that stopped
        # cleanly (its model servers too) exits 0 instead.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        try:
            await router.start(stable_version)
            await server.serve()
        finally:
            await router.shutdown()

    asyncio.run(main())
