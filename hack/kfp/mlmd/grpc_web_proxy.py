"""gRPC-Web to gRPC for the KFP UI's ML Metadata calls: the job of KFP's metadata-envoy.

The UI's browser code talks gRPC-Web (`application/grpc-web-text` or `+proto`) to
/ml_metadata.MetadataStoreService/<Method>; its Node server forwards that to the Service
metadata-envoy-service:9090. Upstream an Envoy does the translation, and no Envoy build is
reachable here, so this process does it: unwrap the length-prefixed message, make the same unary
call on the MLMD gRPC server (bytes in, bytes out: nothing is parsed), and wrap the reply plus a
trailer frame with grpc-status and grpc-message.
"""

from __future__ import annotations

import argparse
import base64
import logging
import struct
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc

log = logging.getLogger("grpc_web_proxy")
DATA, TRAILER = 0x00, 0x80


def unframe(body: bytes) -> bytes:
    """The first data frame's message (the UI's calls are unary)."""
    if len(body) < 5:
        return b""
    flag, length = struct.unpack(">BI", body[:5])
    if flag != DATA:
        raise ValueError(f"expected a data frame, got flag {flag:#x}")
    return body[5 : 5 + length]


def frame(flag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def trailer(code: grpc.StatusCode, message: str) -> bytes:
    text = f"grpc-status:{code.value[0]}\r\ngrpc-message:{message.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n"
    return frame(TRAILER, text.encode())


class Proxy(BaseHTTPRequestHandler):
    channel: grpc.Channel
    protocol_version = "HTTP/1.1"

    def cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", self.headers.get("Origin", "*"))
        self.send_header(
            "Access-Control-Allow-Headers", "content-type,x-grpc-web,x-user-agent,grpc-timeout"
        )
        self.send_header("Access-Control-Expose-Headers", "grpc-status,grpc-message")

    def do_OPTIONS(self) -> None:
        self.send_response(204)
        self.cors()
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        content_type = self.headers.get("Content-Type", "application/grpc-web+proto")
        text = content_type.startswith("application/grpc-web-text")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if text:
            body = base64.b64decode(body)
        call = self.channel.unary_unary(self.path)  # no serializers: raw bytes both ways
        try:
            reply = frame(DATA, call(unframe(body), timeout=60)) + trailer(grpc.StatusCode.OK, "")
        except grpc.RpcError as e:
            reply = trailer(e.code(), e.details() or "")
        except ValueError as e:
            reply = trailer(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if text:
            reply = base64.b64encode(reply)
        self.send_response(200)
        self.cors()
        self.send_header(
            "Content-Type", "application/grpc-web-text" if text else "application/grpc-web+proto"
        )
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug(fmt, *args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen_port", type=int, default=9090)
    parser.add_argument(
        "--upstream", default="metadata-grpc-service:8080", help="the MLMD gRPC server"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    Proxy.channel = grpc.insecure_channel(
        args.upstream, options=[("grpc.max_receive_message_length", 100 * 2**20)]
    )
    server = ThreadingHTTPServer(("0.0.0.0", args.listen_port), Proxy)
    log.info("gRPC-Web on :%d -> gRPC %s", args.listen_port, args.upstream)
    server.serve_forever()


if __name__ == "__main__":
    main()
