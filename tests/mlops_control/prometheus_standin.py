"""An HTTP server on 127.0.0.1 that answers Prometheus' instant-query API (`GET /api/v1/query`,
the shape in Prometheus' docs: {"status": "success", "data": {"resultType": "vector", "result":
[{"metric": {...}, "value": [<time>, "<sample>"]}]}}) for two versions of one model, with
counters that grow on every read, or, as the test sets `answer`, with what a broken exporter or a
broken Prometheus sends: NaN, +Inf, -Inf, an empty result, a malformed body, not JSON at all.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

# What a test may set `PrometheusStandIn.answer` to.
ANSWERS = ("good", "NaN", "+Inf", "-Inf", "empty", "malformed", "not json", "error")


class PrometheusStandIn:
    def __init__(self, stable: str, canary: str) -> None:
        self.stable, self.canary = stable, canary
        self.answer = "good"
        self.reads = 0  # good reads so far: the counters grow with it
        self.queries: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query).get("query", [""])[0]
                status, body = stand_in.respond(url.path, query)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PrometheusStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def respond(self, path: str, query: str) -> tuple[int, bytes]:
        if path != "/api/v1/query":
            return 404, b'{"status":"error","errorType":"not_found","error":"no such path"}'
        self.queries.append(query)
        answer = self.answer
        if answer == "not json":
            return 200, b"<html>502 Bad Gateway</html>"
        if answer == "error":
            return 422, b'{"status":"error","errorType":"execution","error":"query timed out"}'
        if answer == "malformed":
            return (
                200,
                b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}',
            )
        rows = [] if answer == "empty" else self.rows(query, None if answer == "good" else answer)
        doc = {"status": "success", "data": {"resultType": "vector", "result": rows}}
        return 200, json.dumps(doc).encode()

    def rows(self, query: str, poison: str | None) -> list[dict[str, Any]]:
        """Cumulative counters of both versions; `poison` replaces every sample."""
        if "mlops_requests_total" in query:
            self.reads += 1  # one read of the source = one requests query
        n = self.reads
        served = {self.stable: 1000 + 300 * n, self.canary: 40 * n}
        rows = []
        for version, count in served.items():
            if "mlops_requests_total" in query:
                series = [({"outcome": "2xx"}, count), ({"outcome": "5xx"}, 0)]
            elif "duration" in query:
                series = [
                    ({"le": "0.005"}, count * 0.9),
                    ({"le": "0.05"}, count),
                    ({"le": "+Inf"}, count),
                ]
            else:  # the prediction histogram
                series = [
                    ({"le": "0.5"}, count // 2),
                    ({"le": "1.0"}, count),
                    ({"le": "+Inf"}, count),
                ]
            for labels, value in series:
                sample = poison if poison is not None else str(value)
                rows.append({"metric": {"version": version, **labels}, "value": [1e9, sample]})
        return rows
