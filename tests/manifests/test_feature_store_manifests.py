"""The feature store's in-cluster addresses that pipeline steps and model servers are given
(mlops_core.settings DEFAULT_CLUSTER_*) are the ones `make deploy` creates: the feature server's
repository, and the Services of Redis and of Feast's feature server with their ports."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mlops_core.settings import (
    DEFAULT_CLUSTER_FEATURE_REPO,
    DEFAULT_CLUSTER_FEATURE_SERVER_URL,
    DEFAULT_CLUSTER_ONLINE_STORE,
)
from tests.manifests.test_manifests import by_kind, rendered  # noqa: F401  (the fixture)


def _named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in by_kind(objs, kind) if o["metadata"]["name"] == name]
    return obj


def _reaches(objs: list[dict[str, Any]], url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Service `url` names (`<service>.<namespace>:<port>`) and the container port it sends
    that port to, in the Deployment it selects."""
    parts = urlsplit(url)
    service_name, namespace = (parts.hostname or "").split(".")
    service = _named(objs, "Service", service_name)
    assert service["metadata"]["namespace"] == namespace
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == parts.port]
    (deploy,) = [
        d
        for d in by_kind(objs, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].items()
        >= service["spec"]["selector"].items()
    ]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    return container, target


def test_the_cluster_defaults_name_what_make_deploy_runs(rendered) -> None:  # noqa: F811
    _, objs = rendered
    server, server_port = _reaches(objs, DEFAULT_CLUSTER_FEATURE_SERVER_URL)
    assert server["name"] == "feature-server"
    assert f"--port {server_port['containerPort']}" in " ".join(server["args"])
    env = {e["name"]: e.get("value") for e in server["env"]}
    # Steps materialize, and train from, the repository the feature server serves.
    assert env["MLOPS_FEATURE_REPO"] == DEFAULT_CLUSTER_FEATURE_REPO
    redis, redis_port = _reaches(objs, DEFAULT_CLUSTER_ONLINE_STORE)
    assert redis_port["containerPort"] == urlsplit(DEFAULT_CLUSTER_ONLINE_STORE).port
    # The feature server reads the Redis that steps write (by its short name, same namespace).
    assert urlsplit(env["MLOPS_FEATURE_ONLINE_STORE"]).hostname == "mlops-online-store"
    assert urlsplit(env["MLOPS_FEATURE_ONLINE_STORE"]).port == redis_port["containerPort"]
    assert redis["name"] == "redis"
