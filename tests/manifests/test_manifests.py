"""Every kustomize overlay renders, and every object in it is valid.

Built-in kinds are validated against the Kubernetes OpenAPI schemas in strict mode
(kubernetes-validate, at the kind node's Kubernetes version). Custom resources are not in those
schemas: the InferenceService is read into the kserve SDK's V1beta1InferenceService model with no
field lost in the round trip; the Prometheus operator's objects (Prometheus, PodMonitor,
PrometheusRule) get shape checks here, and the kube-apiserver harness (tests/apiserver) applies the
overlays with a server-side dry run against the real CRDs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.inference_service import (
    PREDICTOR_CONTAINER,
    InferenceServiceSpec,
    build_inference_service,
    storage_uri_of,
)
from tests.manifests.kserve_model import round_trip_inference_service
from tests.upstream import pins

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "manifests" / "overlays").iterdir() if p.is_dir())
KUBECTL = shutil.which("kubectl")
CRD_GROUPS = ("serving.kserve.io/", "monitoring.coreos.com/", "gateway.networking.k8s.io/")
PART_OF = {"app.kubernetes.io/part-of": "mlops-platform"}


def k8s_version() -> str:
    """The Kubernetes version of the pinned kind node image (kindest/node:vX.Y.Z[@digest])."""
    match = re.search(r":v(\d+\.\d+\.\d+)", pins()["KIND_NODE_IMAGE"])
    assert match, pins()["KIND_NODE_IMAGE"]
    return match.group(1)


def render(overlay: str) -> list[dict[str, Any]]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: cannot render kustomize overlays")
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_overlays_exist() -> None:
    assert {"dev", "prod"} <= set(OVERLAYS)


def test_builtin_objects_valid_in_strict_mode(rendered) -> None:
    overlay, objs = rendered
    builtin = [o for o in objs if not o["apiVersion"].startswith(CRD_GROUPS)]
    assert len(builtin) >= 8, f"{overlay}: expected namespaces, RBAC, secret, accounts"
    for obj in builtin:
        kubernetes_validate.validate(obj, k8s_version(), strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespace": "mlops"},
        "automountServiceAcountToken": False,
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, k8s_version(), strict=True)


def test_every_object_is_labelled_and_namespaced(rendered) -> None:
    _, objs = rendered
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterStorageContainer"}
    for obj in objs:
        meta = obj["metadata"]
        assert PART_OF.items() <= meta.get("labels", {}).items(), meta["name"]
        assert ("namespace" in meta) == (obj["kind"] not in cluster_scoped), meta["name"]


def test_deployer_role_is_least_privilege(rendered) -> None:
    _, objs = rendered
    (role,) = [
        r for r in by_kind(objs, "Role") if r["metadata"]["name"] == "inferenceservice-deployer"
    ]
    assert role["metadata"]["namespace"] == "mlops"
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("serving.kserve.io", "inferenceservices", "get"),
        ("serving.kserve.io", "inferenceservices", "create"),
        ("serving.kserve.io", "inferenceservices", "patch"),
    }
    (binding,) = [
        b for b in by_kind(objs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "inferenceservice-deployer",
    }
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert subjects == {("mlops", "mlops-deployer"), ("kubeflow", "pipeline-runner")}
    # The only cluster-wide grant is Prometheus' read-only discovery.
    for cr in by_kind(objs, "ClusterRole"):
        for rule in cr["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, cr["metadata"]["name"]


def test_canary_controller_role_is_least_privilege(rendered) -> None:
    """The controller patches InferenceServices but never creates or deletes one; its Lease
    rights are on its own Lease by name (create cannot be limited by name)."""
    _, objs = rendered
    (role,) = [r for r in by_kind(objs, "Role") if r["metadata"]["name"] == "canary-controller"]
    granted = {
        (group, resource, verb, tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    isvc = [("serving.kserve.io", "inferenceservices", v, ()) for v in ("get", "list", "watch")]
    lease = [
        ("coordination.k8s.io", "leases", v, ("mlops-canary-controller",))
        for v in ("get", "update")
    ]
    assert granted == {
        *isvc,
        ("serving.kserve.io", "inferenceservices", "patch", ()),
        ("", "configmaps", "get", ()),
        # a staged promotion/rollback waits on KServe's HTTPRoute (components/isvc_release.py)
        ("gateway.networking.k8s.io", "httproutes", "get", ()),
        ("", "events", "create", ()),
        ("coordination.k8s.io", "leases", "create", ()),
        *lease,
    }
    (binding,) = [
        b for b in by_kind(objs, "RoleBinding") if b["metadata"]["name"] == role["metadata"]["name"]
    ]
    assert [(s["namespace"], s["name"]) for s in binding["subjects"]] == [
        ("mlops", "mlops-canary-controller")
    ]
    (deployment,) = [
        d for d in by_kind(objs, "Deployment") if d["metadata"]["name"] == "mlops-canary-controller"
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mlops-canary-controller"
    assert deployment["spec"]["replicas"] == 2  # one acts: Lease leader election
    assert pod["containers"][0]["args"][:2] == ["canary", "controller"]


def test_secrets_are_templates_without_data(rendered) -> None:
    _, objs = rendered
    secrets = {s["metadata"]["name"]: s for s in by_kind(objs, "Secret")}
    assert set(secrets) == {"mlops-model-store", "mlops-serving-token"}
    for template in secrets.values():  # hack/deploy.sh fills them; nothing secret is in git
        assert "data" not in template and "stringData" not in template
    secret = secrets["mlops-model-store"]
    assert secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"]
    accounts = {a["metadata"]["name"]: a for a in by_kind(objs, "ServiceAccount")}
    server = accounts["mlops-model-server"]
    assert server["secrets"] == [{"name": secret["metadata"]["name"]}]
    assert server["automountServiceAccountToken"] is False


def test_prometheus_selects_the_project_monitors_and_rules(rendered) -> None:
    _, objs = rendered
    (prom,) = by_kind(objs, "Prometheus")
    assert prom["apiVersion"] == "monitoring.coreos.com/v1"
    (pod_monitor,) = by_kind(objs, "PodMonitor")
    (rules,) = by_kind(objs, "PrometheusRule")
    for selector, obj in (
        (prom["spec"]["podMonitorSelector"], pod_monitor),
        (prom["spec"]["ruleSelector"], rules),
    ):
        assert selector["matchLabels"].items() <= obj["metadata"]["labels"].items()
    # PodMonitors in the project's namespace only: Prometheus's RBAC reads pods there only.
    assert prom["spec"]["podMonitorNamespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "mlops"}
    }
    # The scrape target is the model container's port on every InferenceService pod.
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["portNumber"] == 8080 and endpoint["path"] == "/metrics"
    (expr,) = pod_monitor["spec"]["selector"]["matchExpressions"]
    assert expr == {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}


def test_alert_rules_cover_errors_latency_and_staleness(rendered) -> None:
    _, objs = rendered
    (rules,) = by_kind(objs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"ModelHighErrorRate", "ModelHighLatency", "ModelStale"} <= set(alerts)
    for name, rule in alerts.items():
        assert rule["expr"].strip() and rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        # Balanced brackets: a cheap guard against a broken PromQL edit.
        for o, c in ("()", "[]", "{}"):
            assert rule["expr"].count(o) == rule["expr"].count(c), name


def test_inference_services_round_trip_through_the_kserve_model(rendered) -> None:
    overlay, objs = rendered
    for isvc in by_kind(objs, "InferenceService"):
        model, back = round_trip_inference_service(isvc)
        assert type(model).__name__ == "V1beta1InferenceService"
        assert back == isvc, f"{overlay}: a field was lost in the kserve model round trip"


def test_round_trip_finds_an_unknown_field() -> None:
    body = build_inference_service(_spec())
    body["spec"]["predictor"]["canaryTraficPercent"] = 10
    assert round_trip_inference_service(body)[1] != body


def test_prod_serves_the_model_from_git_with_its_registry_image() -> None:
    (isvc,) = by_kind(render("prod"), "InferenceService")
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert container["name"] == PREDICTOR_CONTAINER
    assert container["image"].startswith("registry.example.com/")
    assert storage_uri_of(isvc).startswith("s3://")
    assert isvc["spec"]["predictor"]["minReplicas"] == 2


def test_model_manifest_is_generated_from_the_builder() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "render_model_manifest.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_script_installs_every_pinned_version() -> None:
    script = (ROOT / "hack" / "deploy.sh").read_text()
    versions = pins()
    for name in (
        "GATEWAY_API_VERSION",
        "TRAEFIK_VERSION",
        "KSERVE_VERSION",
        "KFP_VERSION",
        "PROMETHEUS_OPERATOR_VERSION",
    ):
        assert name in versions, f"{name} is not pinned in versions.mk"
        assert f"${name}" in script, f"hack/deploy.sh does not install {name}"
        assert versions[name] not in script, f"hack/deploy.sh hard-codes {name}'s value"
    for path in sorted((ROOT / "hack").rglob("*.sh")):
        subprocess.run(["bash", "-n", str(path)], check=True)


def _spec(**overrides: Any) -> InferenceServiceSpec:
    values = dict(
        name="churn",
        namespace="mlops",
        image="mlops-platform/serving:abc",
        storage_uri="s3://mlpipeline/registry/churn/versions/3",
        model_name="churn",
        model_version="3",
    )
    return InferenceServiceSpec(**(values | overrides))


def served_metric_names() -> set[str]:
    """The metric families the model server and drift monitor define: serving/metric_names.py's
    constants, and any family named in place in serving/*.py."""
    from serving import metric_names

    names = {
        v for k, v in vars(metric_names).items() if k.isupper() and str(v).startswith("mlops_")
    }
    for path in (ROOT / "serving").rglob("*.py"):
        names |= set(re.findall(r'"(mlops_[a-z0-9_]+)"', path.read_text()))
    return names


def referenced_metrics(expr: str) -> set[str]:
    """mlops_* series in a PromQL expression, as their family names (no _total/_bucket/...)."""
    return {
        re.sub(r"_(total|bucket|sum|count)$", "", m)
        for m in re.findall(r"\b(mlops_[a-z0-9_]+)", expr)
    }


def test_dashboard_and_alerts_query_metrics_the_servers_export(rendered) -> None:
    _, objs = rendered
    exported = served_metric_names()
    assert {"mlops_requests", "mlops_request_duration_seconds"} <= exported
    dashboards = [
        json.loads(doc)
        for c in by_kind(objs, "ConfigMap")
        if "grafana_dashboard" in c["metadata"]["labels"]
        for doc in c["data"].values()
    ]
    assert len(dashboards) == 2  # rollout, model health (mlops_control/dashboard/grafana.py)
    exprs = [t["expr"] for d in dashboards for p in d["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    (rules,) = by_kind(objs, "PrometheusRule")
    for group in rules["spec"]["groups"]:
        exprs += [rule["expr"] for rule in group["rules"]]
    for expr in exprs:
        missing = referenced_metrics(expr) - exported
        assert not missing, f"{expr!r} queries {missing}, which no model server exports"


def test_the_serving_image_binds_all_interfaces_explicitly() -> None:
    # `mlops serve` defaults to 127.0.0.1 (tests/mlops/test_serve_cmd.py); the container opts in.
    cmd = (ROOT / "docker" / "serving.Dockerfile").read_text().strip().splitlines()[-1]
    assert cmd.startswith("CMD ") and '"--host", "0.0.0.0"' in cmd


def test_dask_role_only_manages_daskclusters(rendered) -> None:
    _, objs = rendered
    (role,) = [
        r for r in by_kind(objs, "Role") if r["metadata"]["name"] == "mlops-dask-cluster-creator"
    ]
    # In the steps' namespace: a DaskCluster is owned by the step's pod, which lives there.
    assert role["metadata"]["namespace"] == "kubeflow"
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == {
        ("kubernetes.dask.org", "daskclusters", verb) for verb in ("get", "create", "delete")
    }
    (binding,) = [
        b for b in by_kind(objs, "RoleBinding") if b["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert [(s["namespace"], s["name"]) for s in binding["subjects"]] == [
        ("kubeflow", "pipeline-runner")
    ]
    (account,) = [
        a for a in by_kind(objs, "ServiceAccount") if a["metadata"]["name"] == "mlops-dask"
    ]
    assert account["automountServiceAccountToken"] is False
