"""Fixtures for the serving tests: a real registry with real trained models, and real servers.

Each server is a `mlops serve` subprocess on a free 127.0.0.1 port (the same entry point the
serving container runs); teardown sends SIGTERM and checks the process exits cleanly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from mlops_core.registry import ModelRegistry
from tests.kind.cluster_fixture import kind_cluster, write_summary
from tests.serving.harness import (
    MODEL,
    RegisteredModels,
    RunningServer,
    register_test_models,
    start_server,
    stop_server,
)

# The kind cluster is shared by tests/kind and tests/kfp (KFP is installed on it).
__all__ = ["kind_cluster"]


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    write_summary(terminalreporter)


# A test that needs a trained, registered model or a running model server is slow.
SLOW_FIXTURES = frozenset({"registered", "server", "mnt_models_server"})
# The kind cluster's, and KFP's on it (kfp_cluster asks for kind_cluster when it runs).
CLUSTER_FIXTURES = frozenset({"kind_cluster", "kfp_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # The kind cluster (about 8 GiB and a share of both cores while it is up) lives from its first
    # test to the session's end: its tests go last, so no other test runs beside it. On it, the
    # kind tests (which start from an empty registry) go first, then KFP's, then the tests marked
    # `cluster_teardown` (a second `make deploy`, `make undeploy`).
    on_cluster = [i for i in items if CLUSTER_FIXTURES & set(getattr(i, "fixturenames", ()))]
    if on_cluster:
        rest = [i for i in items if i not in set(on_cluster)]
        items[:] = rest + sorted(on_cluster, key=_order_on_cluster)


def _order_on_cluster(item: pytest.Item) -> int:
    if item.get_closest_marker("cluster_teardown"):
        return 2
    return 1 if item.get_closest_marker("kfp") else 0


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory) -> RegisteredModels:
    return register_test_models(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="session")
def server(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The champion (XGBoost) from the registry; small limits so limit tests stay small."""
    log = tmp_path_factory.mktemp("logs") / "server.log"
    running = start_server(
        ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"],
        {"MLOPS_MAX_BATCH_ROWS": "50", "MLOPS_MAX_BODY_BYTES": "65536"},
        log,
    )
    yield running
    code = stop_server(running)
    assert code == 0, f"unclean shutdown (exit {code}):\n{log.read_text()}"


@pytest.fixture(scope="session")
def mnt_models_server(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """The logistic-regression version from a /mnt/models-style copy, unseen categories allowed."""
    mnt = tmp_path_factory.mktemp("mnt") / "models"
    registry = ModelRegistry(registered.registry_uri)
    shutil.copytree(registry.version_dir(MODEL, registered.logistic_version), mnt)
    log = tmp_path_factory.mktemp("logs") / "mnt-server.log"
    running = start_server(
        ["--model-dir", str(mnt), "--model", MODEL, "--unknown-category", "unseen"], {}, log
    )
    yield running
    assert stop_server(running) == 0
