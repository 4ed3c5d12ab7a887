"""A local HTTP server answering the KFP v2beta1 REST calls that `kfp.Client` makes to start a
run from a pipeline package (healthz, find or create the experiment, create the run), and
recording every request. For tests that have no KFP API server: the real one is exercised by
tests/kfp once the kind cluster runs it.

The paths and methods are not written here: they are read from the generated operations of the
installed `kfp_server_api` (the package `kfp.Client` sends its requests through), so a KFP upgrade
that moves them fails here rather than passing against stale paths.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp_server_api


def operation(api_method: Callable[..., Any]) -> tuple[str, str]:
    """(method, path) of one generated kfp_server_api operation, read from its source."""
    found = re.search(r"'(/apis/v2beta1/[^']*)',\s*'([A-Z]+)'", inspect.getsource(api_method))
    if found is None:
        raise AssertionError(f"no v2beta1 path in {api_method.__qualname__}")
    return found.group(2), found.group(1)


HEALTHZ = operation(kfp_server_api.HealthzServiceApi.healthz_service_get_healthz_with_http_info)
LIST_EXPERIMENTS = operation(
    kfp_server_api.ExperimentServiceApi.experiment_service_list_experiments_with_http_info
)
CREATE_EXPERIMENT = operation(
    kfp_server_api.ExperimentServiceApi.experiment_service_create_experiment_with_http_info
)
CREATE_RUN = operation(kfp_server_api.RunServiceApi.run_service_create_run_with_http_info)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any] | None


@dataclass
class KfpApiStandIn:
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # requests to paths kfp.Client should not use
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, rec: Recorded) -> tuple[int, dict[str, Any]]:
        key = (rec.method, rec.path)
        if key == HEALTHZ:
            return 200, {"multi_user": False}
        if key == LIST_EXPERIMENTS:
            wanted = _display_name_filter(rec.query.get("filter", [""])[0])
            found = [e for e in self.experiments if wanted in (None, e["display_name"])]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if key == CREATE_EXPERIMENT:
            body = rec.body or {}
            exp = {"experiment_id": f"exp-{uuid.uuid4().hex[:8]}", **body}
            self.experiments.append(exp)
            return 200, exp
        if key == CREATE_RUN:
            body = rec.body or {}
            run = {"run_id": f"run-{uuid.uuid4().hex[:8]}", "state": "PENDING", **body}
            self.runs.append(run)
            # Not echoed back in full: the pipeline spec is large and the client ignores it.
            return 200, {k: v for k, v in run.items() if k != "pipeline_spec"}
        self.unknown.append(f"{rec.method} {rec.path}")
        return 404, {"error": f"no such path {rec.path}", "code": 5}


def _display_name_filter(raw: str) -> str | None:
    try:
        predicates = json.loads(raw)["predicates"]
    except (ValueError, KeyError, TypeError):
        return None
    names = [p.get("stringValue") for p in predicates if p.get("key") == "display_name"]
    return names[0] if names else None


@contextmanager
def kfp_api_standin() -> Iterator[KfpApiStandIn]:
    state = KfpApiStandIn()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            rec = Recorded(
                self.command, parts.path, parse_qs(parts.query), json.loads(raw) if raw else None
            )
            with state.lock:
                state.requests.append(rec)
                status, body = state.answer(rec)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = _handle

        def log_message(self, *args: object) -> None:  # the test asserts on `requests`
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
