"""The ML Metadata gRPC server KFP needs, as a thin front over MLMD's own store.

MLMD's server is C++ built with Bazel, and no registry here serves its image. The PyPI wheel
`ml-metadata` carries the same C++ store (`metadata_store_extension.so`), which takes each
request as serialized protobuf bytes and returns the serialized response. This server hands each
`ml_metadata.MetadataStoreService` call's bytes to the extension method of the same name and
returns its bytes and status: no request is interpreted here, and nothing is kept in memory. Calls
the extension lacks answer UNIMPLEMENTED (the startup log names them).

Flags are those of MLMD's `metadata_store_server` that KFP's manifest passes, so the upstream
Deployment runs it unchanged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from ml_metadata.metadata_store.pywrap.metadata_store_extension import metadata_store as mlmd
from ml_metadata.proto import metadata_store_pb2, metadata_store_service_pb2

SERVICE = metadata_store_service_pb2.DESCRIPTOR.services_by_name["MetadataStoreService"]
STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}
log = logging.getLogger("metadata_store_server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc_port", type=int, default=8080)
    parser.add_argument("--mysql_config_host", default="")
    parser.add_argument("--mysql_config_port", type=int, default=3306)
    parser.add_argument("--mysql_config_database", default="metadb")
    parser.add_argument("--mysql_config_user", default="root")
    parser.add_argument("--mysql_config_password", default="")
    parser.add_argument("--enable_database_upgrade", default="false")
    # Without a MySQL host the store is SQLite at this path (for a local check only).
    parser.add_argument("--sqlite_filename_uri", default="")
    parser.add_argument("--grpc_channel_arguments", default="")
    parser.add_argument("--connect_timeout_s", type=float, default=300.0)
    return parser.parse_args(argv)


def connection_config(args: argparse.Namespace) -> metadata_store_pb2.ConnectionConfig:
    config = metadata_store_pb2.ConnectionConfig()
    if args.mysql_config_host:
        config.mysql.host = args.mysql_config_host
        config.mysql.port = args.mysql_config_port
        config.mysql.database = args.mysql_config_database
        config.mysql.user = args.mysql_config_user
        config.mysql.password = args.mysql_config_password
    else:
        config.sqlite.filename_uri = args.sqlite_filename_uri or "/tmp/mlmd.sqlite"
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        )
    return config


def open_store(
    config: metadata_store_pb2.ConnectionConfig, upgrade: bool, timeout_s: float
) -> object:
    """Connect, retrying while the database starts (the Deployments start together)."""
    migration = metadata_store_pb2.MigrationOptions(enable_upgrade_migration=upgrade)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return mlmd.CreateMetadataStore(
                config.SerializeToString(), migration.SerializeToString()
            )
        except RuntimeError as e:
            if time.monotonic() > deadline:
                raise
            log.warning("database not ready (%s); retrying in 3 s", e)
            time.sleep(3)


def channel_options(spec: str) -> list[tuple[str, int | str]]:
    """`a=1,b=2` (MLMD's --grpc_channel_arguments) as gRPC server options."""
    options: list[tuple[str, int | str]] = []
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        options.append((key.strip(), int(value) if value.strip().isdigit() else value.strip()))
    return options


def make_handler(store: object, method: Callable, lock: threading.Lock) -> Callable:
    def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
        # MLMD's own server serialises calls on its one store the same way.
        with lock:
            response, message, code = method(store, request)
        if code != 0:
            # The extension returns absl status codes, which are gRPC's numbers.
            context.abort(STATUS_BY_CODE.get(code, grpc.StatusCode.UNKNOWN), message)
        return response

    return handle


def service_handler(store: object) -> tuple[grpc.GenericRpcHandler, list[str], list[str]]:
    lock = threading.Lock()
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    missing: list[str] = []
    for method in SERVICE.methods:
        impl = getattr(mlmd, method.name, None)
        if impl is None:
            missing.append(method.name)
            continue
        # No (de)serializers: bytes in, bytes out; the extension parses them.
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(make_handler(store, impl, lock))
    return (
        grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),
        sorted(handlers),
        missing,
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    config = connection_config(args)
    store = open_store(
        config, args.enable_database_upgrade.lower() == "true", args.connect_timeout_s
    )
    log.info("store open: %s", config.WhichOneof("config"))
    handler, served, missing = service_handler(store)
    log.info(
        "serving %d of %d MetadataStoreService methods; unimplemented: %s",
        len(served),
        len(SERVICE.methods),
        ", ".join(missing) or "none",
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=channel_options(args.grpc_channel_arguments),
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"[::]:{args.grpc_port}")
    server.start()
    log.info("listening on :%d", args.grpc_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=5).wait()


if __name__ == "__main__":
    main()
