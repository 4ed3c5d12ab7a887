"""The dashboard on the cluster (manifests/base/dashboard): a read-only ServiceAccount, the
`mlops dashboard --source cluster` Deployment from the serving image, its Service, and an
HTTPRoute on the cluster's gateway."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.manifests.test_manifests import ROOT, by_kind, render

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


@pytest.fixture(scope="module", params=["dev", "prod"])
def objs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def named(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in by_kind(objs, kind) if o["metadata"]["name"] == name]
    return found


def test_the_dashboard_can_only_read_inference_services_and_events_here(objs) -> None:
    role = named(objs, "Role", "dashboard-reader")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        (g, r, v)
        for g, r in (("serving.kserve.io", "inferenceservices"), ("", "events"))
        for v in ("get", "list", "watch")
    }
    assert not {v for _, _, v in granted} & WRITE_VERBS
    binding = named(objs, "RoleBinding", "dashboard-reader")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "dashboard-reader",
    }
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [
        ("ServiceAccount", "mlops-dashboard")
    ]
    # Namespaced only: no ClusterRole or ClusterRoleBinding names the dashboard's account.
    for kind in ("ClusterRoleBinding",):
        for b in by_kind(objs, kind):
            assert all(s.get("name") != "mlops-dashboard" for s in b.get("subjects", []))


def test_the_deployment_serves_the_cluster_dashboard_from_the_serving_image(objs) -> None:
    deployment = named(objs, "Deployment", "mlops-dashboard")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "mlops-dashboard"
    # the repository only: hack/deploy.sh sets this checkout's tag (--image), as for the controller
    assert container["image"] == "mlops-platform/serving"
    assert container["args"][:3] == ["dashboard", "--source", "cluster"]
    env = {e["name"]: e for e in container["env"]}
    # The Prometheus the project deploys: the operator's governing Service in its namespace.
    (prom,) = by_kind(objs, "Prometheus")
    assert env["MLOPS_PROMETHEUS_URL"]["value"] == (
        f"http://prometheus-operated.{prom['metadata']['namespace']}.svc:9090"
    )
    # The registry the canary controller reads, with the model store's keys.
    controller = named(objs, "Deployment", "mlops-canary-controller")
    (ctl,) = controller["spec"]["template"]["spec"]["containers"]
    ctl_env = {e["name"]: e.get("value") for e in ctl["env"]}
    assert env["MLOPS_REGISTRY_URI"]["value"] == ctl_env["MLOPS_REGISTRY_URI"]
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        ref = env[key]["valueFrom"]["secretKeyRef"]
        secret = named(objs, "Secret", ref["name"])
        assert secret["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    port = env["MLOPS_DASHBOARD_HTTP_PORT"]["value"]
    assert [p["containerPort"] for p in container["ports"]] == [int(port)]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_route_attaches_to_the_clusters_gateway_and_reaches_the_service(objs) -> None:
    route = named(objs, "HTTPRoute", "mlops-dashboard")
    service = named(objs, "Service", "mlops-dashboard")
    gateway = next(
        o
        for o in yaml.safe_load_all((ROOT / "manifests" / "gateway" / "gateway.yaml").read_text())
        if o and o["kind"] == "Gateway"
    )
    (parent,) = route["spec"]["parentRefs"]
    assert (parent["name"], parent["namespace"]) == (
        gateway["metadata"]["name"],
        gateway["metadata"]["namespace"],
    )
    assert all(
        lst["allowedRoutes"]["namespaces"]["from"] == "All" for lst in gateway["spec"]["listeners"]
    )
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"] in [p["port"] for p in service["spec"]["ports"]]
    deployment = named(objs, "Deployment", "mlops-dashboard")
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_deploy_sets_the_dashboards_image_like_the_controllers() -> None:
    # hack/deploy.sh renders the manifests with --image mlops-platform/serving=$SERVING_IMAGE,
    # which rewrites every container naming that repository (tests/kind/test_cluster_files.py)
    (dashboard,) = [
        d
        for d in yaml.safe_load_all((ROOT / "manifests/base/dashboard/deployment.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ]
    (container,) = dashboard["spec"]["template"]["spec"]["containers"]
    assert container["image"].split(":")[0] == "mlops-platform/serving"
