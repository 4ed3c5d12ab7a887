"""The local traffic router: the laptop stand-in for the gateway's weighted split on the cluster.

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
  PUT  /router/split  {"percents": {version: percent}} an experiment's N-way split (the stable
                                           version among them): servers started for new versions,
                                           stopped for versions left out
  PUT  /router/shadow {"version", "percent"} tee `percent` of live requests to a shadow version
                                           (0: stop the shadow); see shadow_tee.py
  POST /router/select {"version"}          end an experiment: the version becomes the stable, all
                                           others stop
  POST /router/labels {"labels": [{"request_id", "label"}]} labels for the experiments' join,
                                           appended to one log (labels.jsonl) whichever version
                                           served the request
Everything else is proxied. Every proxied request carries an `x-request-id` (the client's, else
one the router makes) so a copy and a label join by it.

A canary the router cannot reach (its server died, or refuses connections) is taken out of the
route at once: the request that found it down is sent to the stable instead (a refused connection
never reached the canary, so it is safe to resend), and the canary's share goes to the stable
until a probe of its readiness endpoint answers again. So a dead canary costs its clients at most
the requests that were in flight on it, not a 502 for each of them until the analysis rolls it
back. `canary_reachable` in the state says which way it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_control.traffic.model_server_process import ModelServerError, ModelServerProcess
from mlops_control.traffic.shadow_tee import ShadowTee
from mlops_core.errors import ConflictError, InvalidInputError, MlopsError, NotFoundError
from mlops_core.jsonl_log import JsonLinesWriter
from mlops_core.registry import ModelRegistry, RegistryError
from serving.http_errors import NotReady, UpstreamFailed, send_error

logger = logging.getLogger(__name__)

# The ASGI types (starlette's, as serving.http_errors.send_error takes them).
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

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
LABEL_LOG = "labels.jsonl"


@dataclass
class RouterConfig:
    model: str
    registry_uri: str
    log_dir: Path
    server_env: dict[str, str] = field(default_factory=dict)
    upstream_timeout_s: float = 30.0
    canary_probe_interval_s: float = 0.5  # how often an unreachable canary is asked if it is back


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
        self.counts = {"stable": 0, "canary": 0, "upstream_errors": 0, "canary_unreachable": 0}
        self.canary_reachable = True
        self._probe: asyncio.Task[None] | None = None
        self.rng = rng or random.Random()
        self.client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()
        # An experiment's split: version -> percent (the stable's version among them), and the
        # servers of its other versions; empty when no experiment runs.
        self.split: dict[str, int] = {}
        self.arms: dict[str, ModelServerProcess] = {}
        self.arm_counts: dict[str, int] = {}
        self.shadow: ShadowTee | None = None
        self._shadow_server: ModelServerProcess | None = None
        self._labels: JsonLinesWriter | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, stable_version: str) -> None:
        self.client = httpx.AsyncClient(
            timeout=self.config.upstream_timeout_s,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        self.stable = await self._spawn(stable_version)

    async def shutdown(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        servers = [self.canary, self.stable, self._shadow_server, *self.arms.values()]
        self.canary, self.stable, self._shadow_server, self.arms = None, None, None, {}
        if self.shadow is not None:
            await self.shadow.close()
            self.shadow = None
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
            "canary_reachable": self.canary_reachable,
            "counts": dict(self.counts),
            "split": dict(self.split),
            "arms": {v: s.url for v, s in self.arms.items()},
            "arm_counts": dict(self.arm_counts),
            "shadow": None if self.shadow is None else self.shadow.state(),
            "labels_log": str(self.config.log_dir / LABEL_LOG),
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
            self.canary_reachable = True
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
            if not self.canary_reachable:
                raise RouterStateConflict(
                    f"canary v{self.canary.version} is unreachable: roll it back instead"
                )
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

    # --- experiments -------------------------------------------------------------------------
    def _check_registered(self, version: str) -> None:
        try:  # a clear answer now rather than a server that fails to start
            ModelRegistry(self.config.registry_uri).get(self.config.model, version)
        except RegistryError as e:
            raise UnknownAdminTarget(str(e)) from e

    async def _start_server(self, version: str, what: str) -> ModelServerProcess:
        self._check_registered(version)
        try:
            return await self._spawn(version)
        except ModelServerError as e:
            raise RouterStateConflict(f"the {what}'s model server did not start: {e}") from e

    @staticmethod
    def _split_of(doc: dict[str, Any]) -> dict[str, int]:
        percents = doc.get("percents")
        if not isinstance(percents, dict) or not percents:
            raise BadAdminRequest("'percents' must be a mapping of version to percent")
        out = {str(v): TrafficRouter._percent({"p": p}, "p") for v, p in percents.items()}
        if sum(out.values()) != 100:
            raise BadAdminRequest(f"percents must sum to 100, got {sum(out.values())}: {out}")
        return out

    async def set_split(self, doc: dict[str, Any]) -> dict[str, Any]:
        split = self._split_of(doc)
        async with self._lock:
            if self.canary is not None:
                raise RouterStateConflict(
                    f"canary v{self.canary.version} is running; promote or roll it back first"
                )
            stable = self.stable
            if stable is None or stable.version not in split:
                have = None if stable is None else stable.version
                raise BadAdminRequest(f"the split must include the stable version {have}")
            for version in split:
                if version != stable.version and version not in self.arms:
                    self.arms[version] = await self._start_server(version, "experiment version")
            gone = [v for v in self.arms if v not in split]
            stopped = [self.arms.pop(v) for v in gone]
            self.split = split if len(split) > 1 else {}
        await self._stop_later(stopped)
        return self.state()

    async def set_shadow(self, doc: dict[str, Any]) -> dict[str, Any]:
        percent = self._percent(doc, "percent")
        version = str(doc.get("version", "")).strip()
        async with self._lock:
            old_tee, old_server = self.shadow, self._shadow_server
            self.shadow, self._shadow_server = None, None
            if percent:
                if not version:
                    raise BadAdminRequest("'version' (the shadow version) is required")
                if self.stable is not None and self.stable.version == version:
                    raise RouterStateConflict(f"version {version} is the stable version")
                if old_server is not None and old_server.version == version:
                    server = old_server
                    old_server = None
                else:
                    server = await self._start_server(version, "shadow")
                self._shadow_server = server
                self.shadow = ShadowTee.open(version, server.url, percent, self.config.log_dir)
        if old_tee is not None:
            await old_tee.close()
        await self._stop_later([old_server] if old_server is not None else [])
        return self.state()

    async def select(self, doc: dict[str, Any]) -> dict[str, Any]:
        version = str(doc.get("version", "")).strip()
        async with self._lock:
            stable = self.stable
            if stable is not None and stable.version == version:
                chosen = stable
            elif version in self.arms:
                chosen = self.arms.pop(version)
            else:
                raise RouterStateConflict(f"version {version!r} is not in the experiment's route")
            stopped = [
                s for s in (stable, *self.arms.values()) if s is not None and s is not chosen
            ]
            self.stable, self.arms, self.split = chosen, {}, {}
        await self._stop_later(stopped)
        return self.state()

    async def add_labels(self, doc: dict[str, Any]) -> dict[str, Any]:
        labels = doc.get("labels", [doc] if "request_id" in doc else None)
        if not isinstance(labels, list) or not labels:
            raise BadAdminRequest("'labels' must be a list of {request_id, label}")
        for item in labels:
            if not isinstance(item, dict) or not str(item.get("request_id", "")).strip():
                raise BadAdminRequest(f"each label needs a request_id, got {item!r}")
            if "label" not in item:
                raise BadAdminRequest(f"each label needs a label, got {item!r}")
        if self._labels is None:
            self._labels = JsonLinesWriter(self.config.log_dir / LABEL_LOG)
        now = time.time()
        for item in labels:
            self._labels.write({"request_id": str(item["request_id"]), "label": item["label"],
                                "at": now})  # fmt: skip
        return {"accepted": len(labels)}

    @staticmethod
    async def _stop_later(servers: list[ModelServerProcess]) -> None:
        if servers:
            await asyncio.sleep(0.5)  # let requests already sent to them finish
            for server in servers:
                await asyncio.to_thread(server.stop)

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
            ("PUT", "/router/split"): self.set_split,
            ("PUT", "/router/shadow"): self.set_shadow,
            ("POST", "/router/select"): self.select,
            ("POST", "/router/labels"): self.add_labels,
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
        if not any(k.lower() == b"x-request-id" for k, _ in scope["headers"]):
            scope["headers"] = [*scope["headers"], (b"x-request-id", uuid.uuid4().hex.encode())]
        if self.split:
            await self._proxy_split(scope, body, send)
            return
        canary = self.canary
        to_canary = (
            canary is not None
            and self.canary_reachable
            and self.rng.random() * 100 < self.canary_percent
        )
        if to_canary and canary is not None:
            try:
                r = await self._forward(canary, scope, body)
            except httpx.HTTPError as e:
                if not self._canary_unreachable(canary, e):
                    await self._upstream_failed("canary", canary, e, send)
                    return
                # Refused: the request never reached the canary; the stable answers it instead.
            else:
                await self._respond("canary", r, send)
                return
        upstream = self.stable
        if upstream is None or self.client is None:
            await send_error(send, NotReady("the router has no stable version yet"))
            return
        await self._serve_from("stable", upstream, scope, body, send)

    async def _serve_from(
        self, role: str, upstream: ModelServerProcess, scope: Scope, body: bytes, send: Send
    ) -> None:
        """Answer from `upstream`, then (the client's answer sent) tee a copy to the shadow."""
        started = time.perf_counter()
        try:
            r = await self._forward(upstream, scope, body)
        except httpx.HTTPError as e:
            await self._upstream_failed(role, upstream, e, send)
            return
        latency = time.perf_counter() - started
        await self._respond(role, r, send)
        tee, client = self.shadow, self.client
        copy = tee is not None and r.status_code == 200 and self.rng.random() * 100 < tee.percent
        if copy and tee is not None and client is not None:
            tee.copy(client, r.request, upstream.version, r.content, latency)

    async def _proxy_split(self, scope: Scope, body: bytes, send: Send) -> None:
        versions = list(self.split)
        version = self.rng.choices(versions, weights=[self.split[v] for v in versions])[0]
        stable = self.stable
        upstream = stable if stable is not None and stable.version == version else None
        upstream = upstream or self.arms.get(version)
        if upstream is None:
            await send_error(send, NotReady(f"version {version} has no server in the route"))
            return
        self.arm_counts[version] = self.arm_counts.get(version, 0) + 1
        await self._serve_from(f"v{version}", upstream, scope, body, send)

    async def _forward(
        self, upstream: ModelServerProcess, scope: Scope, body: bytes
    ) -> httpx.Response:
        if self.client is None:
            raise httpx.ConnectError("the router is shutting down")
        url = upstream.url + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in HOP_BY_HOP
        ]
        return await self.client.request(scope["method"], url, headers=headers, content=body)

    def _canary_unreachable(self, canary: ModelServerProcess, error: httpx.HTTPError) -> bool:
        """Take a canary that refused the connection (or whose process is gone) out of the route,
        and start probing it; True when the request was never delivered (safe to resend)."""
        refused = isinstance(error, httpx.ConnectError)
        if not refused and canary.process.poll() is None:
            return False
        if self.canary is canary and self.canary_reachable:
            self.canary_reachable = False
            logger.warning(
                "canary v%s at %s is unreachable (%r): its share goes to the stable until it "
                "answers again",
                canary.version,
                canary.url,
                error,
            )
            self._probe = asyncio.get_running_loop().create_task(self._probe_canary(canary))
        self.counts["canary_unreachable"] += 1
        return refused

    async def _probe_canary(self, canary: ModelServerProcess) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while self.canary is canary and not self.canary_reachable:
                await asyncio.sleep(self.config.canary_probe_interval_s)
                try:
                    ready = (await client.get(f"{canary.url}/v2/health/ready")).status_code == 200
                except httpx.HTTPError:
                    continue
                if ready and self.canary is canary:
                    self.canary_reachable = True
                    logger.warning("canary v%s answers again: back in the route", canary.version)

    async def _upstream_failed(
        self, role: str, upstream: ModelServerProcess, error: httpx.HTTPError, send: Send
    ) -> None:
        self.counts["upstream_errors"] += 1
        failed = UpstreamFailed(f"{role} upstream {upstream.url} failed: {error!r}")
        await send_error(send, failed, [(b"x-routed-to", role.encode())])

    async def _respond(self, role: str, r: httpx.Response, send: Send) -> None:
        if role in self.counts:
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
        # A method replaced by a context-manager class with the same call shape:
        server.capture_signals = contextlib.nullcontext  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        try:
            await router.start(stable_version)
            await server.serve()
        finally:
            await router.shutdown()

    asyncio.run(main())
