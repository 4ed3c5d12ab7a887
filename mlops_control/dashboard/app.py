"""The dashboard's HTTP server: three pages (one HTML shell; the browser draws each page from the
JSON API) and the API they poll. GET only: the dashboard changes nothing.

    GET /                                        portfolio page   <- GET /api/portfolio
    GET /models/<name>                           model page       <- GET /api/models/<name>
    GET /models/<name>/features/<feature>        feature page     <- GET /api/models/<name>/features/<feature>
    GET /static/dashboard.{js,css}               the bundle `make dashboard-assets` builds
    GET /healthz
"""

from __future__ import annotations

import asyncio
from importlib.resources import files
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mlops_control.dashboard.views import DashboardData
from mlops_core.errors import MlopsError
from serving.http_errors import error_response

PACKAGE = files("mlops_control.dashboard")
BUNDLE = ("dashboard.js", "dashboard.css")


class MissingAssetsError(MlopsError):
    """The browser bundle was not built."""


class _Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def static_dir() -> str:
    static = PACKAGE / "static"
    missing = [name for name in BUNDLE if not (static / name).is_file()]
    if missing:
        raise MissingAssetsError(
            f"the dashboard's browser bundle is missing ({', '.join(missing)} under {static}); "
            "build it with `make dashboard-assets` (needs Node.js and npm)"
        )
    return str(static)


def create_app(data: DashboardData, *, poll_interval_s: float = 5.0) -> Starlette:
    shell = (
        (PACKAGE / "page.html").read_text().replace("{{POLL_MS}}", str(int(poll_interval_s * 1000)))
    )

    async def page(_: Request) -> Response:
        return HTMLResponse(shell, headers={"Cache-Control": "no-cache"})

    async def answer(fn: Any, *args: str) -> Response:
        try:
            # The registry and the sources block (files, S3, HTTP): off the event loop.
            doc = await asyncio.to_thread(fn, *args)
        except MlopsError as e:
            return error_response(e)
        return _Json(doc, headers={"Cache-Control": "no-store"})

    async def portfolio(_: Request) -> Response:
        return await answer(data.portfolio)

    async def model(request: Request) -> Response:
        return await answer(data.model, request.path_params["name"])

    async def feature(request: Request) -> Response:
        p = request.path_params
        return await answer(data.feature, p["name"], p["feature"])

    async def healthz(_: Request) -> Response:
        return _Json({"status": "ok", "source": data.source.kind})

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/models/{name}", page, methods=["GET"]),
        Route("/models/{name}/features/{feature}", page, methods=["GET"]),
        Route("/api/portfolio", portfolio, methods=["GET"]),
        Route("/api/models/{name}", model, methods=["GET"]),
        Route("/api/models/{name}/features/{feature}", feature, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Mount("/static", StaticFiles(directory=static_dir()), name="static"),
    ]
    return Starlette(routes=routes)
