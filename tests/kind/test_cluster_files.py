"""The cluster path's files against the upstream files they rely on, at the pinned versions
(issue 11, items 1-9). No cluster needed: these run everywhere; tests/kind/test_cluster.py runs
the same path on a real kind cluster.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.upstream import ROOT, extract, go_module_dir, kfp_file, kserve_file, pins

DEPLOY = (ROOT / "hack" / "deploy.sh").read_text()
MANIFESTS_PY = ROOT / "hack" / "manifests.py"


def function_body(script: str, name: str) -> str:
    match = re.search(rf"^{name}\(\) \{{\n(.*?)^\}}", script, re.S | re.M)
    assert match, f"hack/deploy.sh has no function {name}"
    return match.group(1)


def project_objects(overlay: str = "dev") -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def kserve_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("kserve")
    extract("kserve", "kserve-src.tar.gz", pins()["KSERVE_SOURCE_COMMIT"], "config/", dest)
    # What hack/deploy.sh gets from KSERVE_MANIFESTS (a kustomize dir offline), rendered once.
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(dest / "config" / "overlays" / "standalone" / "kserve")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    out = dest / "kserve.yaml"
    out.write_text(rendered)
    return out


def render(source: Path | str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(MANIFESTS_PY), str(source), *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


# --- item 1: namespace first, CRDs established before their objects -----------------------------
def test_kserve_namespace_exists_before_anything_namespaced_is_applied() -> None:
    body = function_body(DEPLOY, "install_kserve")
    assert body.index("ensure_namespace kserve") < body.index("apply_crds_then_rest")


def test_kserve_crds_are_applied_apart_from_their_objects(kserve_config: Path) -> None:
    crds = render(kserve_config, "--part", "crds")
    rest = render(kserve_config, "--part", "rest")
    crd_kinds = {c["spec"]["names"]["kind"] for c in crds}
    assert {c["kind"] for c in crds} == {"CustomResourceDefinition"}
    # The upstream file holds a ClusterStorageContainer and its CRD: they must go in two applies.
    assert "ClusterStorageContainer" in crd_kinds
    assert any(o["kind"] == "ClusterStorageContainer" for o in rest)
    assert not any(o["kind"] == "CustomResourceDefinition" for o in rest)
    body = function_body(DEPLOY, "apply_crds_then_rest")
    assert (
        body.index("--part crds") < body.index("condition=established") < body.index("--part rest")
    )


# --- item 2: no cluster resources; the webhook must answer before the deploy goes on -------------
def test_kserve_install_waits_for_the_webhook_and_skips_cluster_resources() -> None:
    assert "kserve-cluster-resources" not in DEPLOY.replace(
        "(kserve-cluster-resources.yaml is not applied", ""
    )
    body = function_body(DEPLOY, "install_kserve")
    assert "--dry-run=server" in body and "InferenceService" in body


def test_webhooks_get_the_ca_and_cert_manager_objects_are_left_out(
    kserve_config: Path, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    objs = render(
        kserve_config,
        "--part",
        "rest",
        "--drop-kind",
        "Certificate",
        "--drop-kind",
        "Issuer",
        "--ca-bundle",
        str(ca),
    )
    assert not {"Certificate", "Issuer"} & {o["kind"] for o in objs}
    hooks = [o for o in objs if o["kind"].endswith("WebhookConfiguration")]
    assert hooks
    for hook in hooks:
        for webhook in hook["webhooks"]:
            assert webhook["clientConfig"]["caBundle"], (hook["metadata"]["name"], webhook["name"])
    # Every Certificate the upstream manifests ask cert-manager for is signed by the deploy.
    certs = subprocess.run(
        [sys.executable, str(MANIFESTS_PY), str(kserve_config), "--certificates"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert any(
        '"kserve-webhook-server-cert"' in c and "kserve-webhook-server-service.kserve.svc" in c
        for c in certs
    )
    mounted = {
        v["secret"]["secretName"]
        for o in objs
        if o["kind"] == "Deployment"
        for v in o["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in v
    }
    assert "kserve-webhook-server-cert" in mounted


def test_kserve_runs_in_standard_mode_with_the_gateway_api(kserve_config: Path) -> None:
    body = function_body(DEPLOY, "install_kserve")
    sets = dict(re.findall(r'inferenceservice-config:([\w.]+)=([^"]+)"', body))
    objs = render(
        kserve_config,
        "--part",
        "rest",
        *[f"--configmap-json=kserve/inferenceservice-config:{k}={v}" for k, v in sets.items()],
    )
    (config,) = [
        o
        for o in objs
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "inferenceservice-config"
    ]
    import json

    deploy = json.loads(config["data"]["deploy"])
    ingress = json.loads(config["data"]["ingress"])
    assert deploy["defaultDeploymentMode"] == "Standard"
    assert ingress["enableGatewayApi"] is True
    # The Gateway KServe attaches routes to is the one manifests/gateway creates.
    gateway = yaml.safe_load_all((ROOT / "manifests/gateway/gateway.yaml").read_text())
    (gw,) = [g for g in gateway if g["kind"] == "Gateway"]
    assert (
        ingress["kserveIngressGateway"] == f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
    )


# --- item 3: the object store is KFP's SeaweedFS --------------------------------------------------
def seaweedfs_service() -> dict[str, Any]:
    return yaml.safe_load(
        kfp_file("manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-service.yaml")
    )


def test_model_store_secret_points_at_kfps_object_store_service() -> None:
    service = seaweedfs_service()
    (secret,) = [
        o
        for o in project_objects()
        if o["kind"] == "Secret" and o["metadata"]["name"] == "mlops-model-store"
    ]
    host, port = secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"].split(":")
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}


def test_pipeline_steps_default_to_kfps_object_store_and_its_secret() -> None:
    from urllib.parse import urlparse

    from pipelines.training import ObjectStore

    store = ObjectStore()
    service = seaweedfs_service()
    url = urlparse(store.endpoint_url)
    assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}"
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    secret = yaml.safe_load(
        kfp_file(
            "manifests/kustomize/third-party/seaweedfs/base/seaweedfs/mlpipeline-minio-artifact-secret.yaml"
        )
    )
    assert store.secret_name == secret["metadata"]["name"]
    assert {store.access_key_field, store.secret_key_field} <= set(secret["stringData"])


# --- item 4: KFP's NetworkPolicy on SeaweedFS must admit the model servers ------------------------
def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        op = expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def admitted(
    policies: list[dict[str, Any]],
    pod_ns: str,
    ns_labels: dict[str, str],
    port: int,
    target_ns: str,
    target_labels: dict[str, str],
) -> bool:
    """Kubernetes NetworkPolicy ingress semantics, for the selectors these policies use."""
    relevant = [
        p
        for p in policies
        if p["metadata"].get("namespace", target_ns) == target_ns
        and _selects(p["spec"]["podSelector"], target_labels)
    ]
    if not relevant:
        return True
    for policy in relevant:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and port not in {p["port"] for p in ports}:
                continue
            for peer in rule.get("from", []):
                ns_ok = (
                    "namespaceSelector" in peer and _selects(peer["namespaceSelector"], ns_labels)
                ) or ("namespaceSelector" not in peer and pod_ns == target_ns)
                if ns_ok:
                    return True
    return False


def test_model_servers_in_the_project_namespace_may_reach_seaweedfs() -> None:
    kfp_policy = yaml.safe_load(
        kfp_file(
            "manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-networkpolicy.yaml"
        )
    )
    kfp_policy["metadata"]["namespace"] = "kubeflow"  # set by its kustomization
    deployment = yaml.safe_load(
        kfp_file(
            "manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml"
        )
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    s3_port = next(
        p["targetPort"] for p in seaweedfs_service()["spec"]["ports"] if p["port"] == 9000
    )
    mlops_ns = {"kubernetes.io/metadata.name": "mlops"}
    assert not admitted([kfp_policy], "mlops", mlops_ns, s3_port, "kubeflow", pod_labels), (
        "KFP's policy alone admits the mlops namespace: this test no longer tests anything"
    )
    ours = [o for o in project_objects() if o["kind"] == "NetworkPolicy"]
    assert admitted([kfp_policy, *ours], "mlops", mlops_ns, s3_port, "kubeflow", pod_labels)
    # ... and nothing else is opened up.
    other = {"kubernetes.io/metadata.name": "default"}
    assert not admitted([kfp_policy, *ours], "default", other, s3_port, "kubeflow", pod_labels)


# --- item 5: the model's host is KServe's domainTemplate, not a remembered one ---------------------
def test_readme_and_status_name_the_host_kserve_generates() -> None:
    from tests.upstream import kserve_file

    config = yaml.safe_load(kserve_file("config/configmap/inferenceservice.yaml"))
    import json

    ingress = json.loads(config["data"]["ingress"])

    def render_host(name: str) -> str:  # Go's text/template, for the fields the template uses
        out = ingress["domainTemplate"]
        for key, value in (
            ("Name", name),
            ("Namespace", "mlops"),
            ("IngressDomain", ingress["ingressDomain"]),
        ):
            out = re.sub(r"\{\{\s*\." + key + r"\s*\}\}", value, out)
        assert "{{" not in out, out
        return out

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Cluster") :]
    section = section[: section.index("\n## ", 5)]
    hosts = set(re.findall(r"Host: ([\w.-]+)", section))
    assert hosts == {render_host("churn")}, hosts
    # The predictor's own route (KServe names it after PredictorServiceName without predictor.name).
    assert render_host("churn-predictor") in section
    assert "churn.mlops.example.com" not in readme
    status = (ROOT / "hack" / "status.sh").read_text()
    assert "example.com" not in status and ".status.url" in status


# --- item 6: a second deploy must not conflict with the first -------------------------------------
def test_deploy_applies_server_side_and_patches_only_its_own_secrets() -> None:
    # The only patches fill the project's own Secret templates (the model store's credentials,
    # the serving token); no upstream object is patched for a later apply to fight over.
    own_secrets = ("secret mlops-model-store", "secret mlops-serving-token")
    patches = [line for line in DEPLOY.splitlines() if "kubectl patch" in line]
    assert patches and all(any(s in line for s in own_secrets) for line in patches), patches
    (apply_def,) = [line for line in DEPLOY.splitlines() if line.startswith("apply() {")]
    assert "--server-side --force-conflicts" in apply_def
    # Every upstream and project manifest goes through that one apply (KFP's kustomize aside).
    kfp = function_body(DEPLOY, "install_kfp")
    others = [
        line
        for line in DEPLOY.splitlines()
        if "kubectl apply" in line
        and line != apply_def
        and "--dry-run" not in line
        and line not in kfp
    ]
    assert not others, others


# --- item 8: the golden pipeline names an image `make images kind-load` makes and loads -----------
def test_golden_pipeline_image_is_built_and_loaded_by_make() -> None:
    golden = (ROOT / "pipelines" / "training.yaml").read_text()
    images = set(re.findall(r"^\s*image: (\S+)$", golden, re.M))
    assert images
    dry = subprocess.run(
        ["make", "-n", "images", "kind-load", "CLUSTER=kind"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    builds = [line for line in dry.splitlines() if line.startswith("docker build")]
    built = set(re.findall(r"-t (\S+)", " ".join(builds)))
    loads = next(line for line in dry.splitlines() if "load docker-image" in line)
    for image in images:
        assert image in built, f"{image} is not tagged by make images: {built}"
        assert image in loads.split(), f"{image} is not loaded by make kind-load"


# --- item 9: the node image by digest; no deprecated deployment mode --------------------------------
def test_kind_node_image_is_the_pinned_kind_releases_default_by_digest() -> None:
    p = pins()
    assert re.fullmatch(r"kindest/node:v[\d.]+@sha256:[0-9a-f]{64}", p["KIND_NODE_IMAGE"])
    source = (
        go_module_dir("sigs.k8s.io/kind", p["KIND_VERSION"]) / "pkg/apis/config/defaults/image.go"
    ).read_text()
    (default,) = re.findall(r'const Image = "([^"]+)"', source)
    assert p["KIND_NODE_IMAGE"] == default


def test_nothing_asks_for_the_deprecated_serverless_mode() -> None:
    for path in [*(ROOT / "manifests").rglob("*.yaml"), ROOT / "hack" / "deploy.sh"]:
        text = path.read_text()
        assert "Serverless" not in text, path
        assert "kourier" not in text.lower(), path


def test_traefik_rbac_binds_the_service_account_our_deployment_uses() -> None:
    p = pins()
    rbac = go_module_dir("github.com/traefik/traefik/v3", p["TRAEFIK_VERSION"]) / (
        "docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"
    )
    assert (
        f"/{p['TRAEFIK_VERSION']}/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"
        in DEPLOY.replace("$TRAEFIK_VERSION", p["TRAEFIK_VERSION"])
    )
    objs = render(rbac, "--subject-namespace", "traefik")
    (binding,) = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    (subject,) = binding["subjects"]
    ours = list(yaml.safe_load_all((ROOT / "manifests/gateway/traefik.yaml").read_text()))
    (deployment,) = [o for o in ours if o["kind"] == "Deployment"]
    assert subject["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert subject["namespace"] == deployment["metadata"]["namespace"]
    source = (
        go_module_dir("github.com/traefik/traefik/v3", p["TRAEFIK_VERSION"])
        / "pkg/provider/kubernetes/gateway/kubernetes.go"
    ).read_text()
    (controller,) = re.findall(r'controllerName = "([^"]+)"', source)
    (gatewayclass,) = [
        g
        for g in yaml.safe_load_all((ROOT / "manifests/gateway/gateway.yaml").read_text())
        if g["kind"] == "GatewayClass"
    ]
    assert gatewayclass["spec"]["controllerName"] == controller


def test_image_substitution_changes_images_not_names(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "traefik"},
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "traefik",
                                        "image": "traefik:v3.6.12",
                                        "imagePullPolicy": "Always",
                                        "args": [
                                            "--service.name=traefik",
                                            "--reloader=quay.io/x/reloader:v1",
                                        ],
                                    }
                                ]
                            }
                        }
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "c"},
                    "data": {"j": '{"image" : "kserve/storage-initializer:latest"}'},
                },
            ]
        )
    )
    objs = render(
        tmp_path / "m.yaml",
        "--image",
        "traefik=local/traefik:1",
        "--image",
        "quay.io/x/reloader=local/reloader:1",
        "--image",
        "kserve/storage-initializer=local/si:1",
        "--image",
        "kserve/agent=",  # no local build: left as released
    )
    (container,) = objs[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "local/traefik:1"
    assert container["imagePullPolicy"] == "IfNotPresent"  # local builds are in no registry
    assert container["args"] == ["--service.name=traefik", "--reloader=local/reloader:1"]
    assert objs[1]["data"]["j"] == '{"image" : "local/si:1"}'


def test_prometheus_operators_bundle_goes_through_the_manifest_tool() -> None:
    """The deploy's `prometheus` step reads the release bundle with hack/manifests.py. Its CRDs
    list "=" among enum values, YAML 1.1's value tag, which yaml.safe_load refuses."""
    module = "github.com/prometheus-operator/prometheus-operator"
    bundle = go_module_dir(module, pins()["PROMETHEUS_OPERATOR_VERSION"]) / "bundle.yaml"
    done = subprocess.run(
        [sys.executable, "hack/manifests.py", str(bundle), "--part", "crds"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "- '='" in done.stdout


def test_rollout_bookkeeping_is_kept_off_the_model_pods() -> None:
    """KServe copies an InferenceService's annotations onto its predictors' pod templates except
    those in inferenceService.serviceAnnotationDisallowedList (the config key read from the pinned
    source). Every annotation the project keeps on the object is listed, so no analysis restarts
    the model pods (seen on the kind cluster: each rollout-state write rolled both Deployments)."""
    config_go = kserve_file("pkg/apis/serving/v1beta1/configmap.go")
    assert 'json:"serviceAnnotationDisallowedList,omitempty"' in config_go
    assert 'json:"serviceLabelDisallowedList,omitempty"' in config_go
    written = set()
    for module in (
        "components/isvc_traffic.py",
        "serving/canary/controller.py",
        "serving/monitoring/cluster_trigger.py",
    ):
        written |= set(re.findall(r'ANNOTATION_PREFIX \+ "([a-z-]+)"', (ROOT / module).read_text()))
    written.discard("rollout-step")  # a label (Knative mode only), in the label list
    listed = re.search(r"ROLLOUT_ANNOTATIONS='(\[.*?\])'", DEPLOY, re.S)
    assert listed, "hack/deploy.sh has no ROLLOUT_ANNOTATIONS"
    # mlops.io/model-version changes on promotion: on the pods it would restart them then.
    written.add("mlops.io/model-version")
    assert {a.removeprefix("mlops.platform/") for a in yaml.safe_load(listed.group(1))} == written
    assert "inferenceService.serviceAnnotationDisallowedList=$ROLLOUT_ANNOTATIONS" in DEPLOY
    assert 'serviceLabelDisallowedList=[\\"mlops.platform/rollout-step\\"]' in DEPLOY


def test_model_pods_drain_before_stopping_in_a_field_the_deployed_crd_keeps(
    kserve_config: Path,
) -> None:
    """The pre-stop sleep is a Kubernetes field (LifecycleHandler.sleep, SleepAction.seconds, as
    the pinned kubernetes client names them) that the InferenceService CRD deployed must keep: a
    structural schema prunes a field it does not list, and the drain would silently vanish."""
    from kubernetes.client import V1LifecycleHandler, V1SleepAction

    from components.inference_service import PRE_STOP_DRAIN_S, InferenceServiceSpec
    from components.inference_service import build_inference_service as build

    assert V1LifecycleHandler.attribute_map["sleep"] == "sleep"
    assert V1SleepAction.attribute_map["seconds"] == "seconds"
    body = build(
        InferenceServiceSpec(
            name="m", namespace="ns", image="i", storage_uri="s3://b/m", model_name="m",
            model_version="1",
        )
    )  # fmt: skip
    (container,) = body["spec"]["predictor"]["containers"]
    assert container["lifecycle"] == {"preStop": {"sleep": {"seconds": PRE_STOP_DRAIN_S}}}
    crds = render(kserve_config, "--part", "crds")
    (isvc,) = [c for c in crds if c["spec"]["names"]["kind"] == "InferenceService"]
    (served,) = [v for v in isvc["spec"]["versions"] if v["name"] == "v1beta1"]
    predictor = served["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictor"]
    items = predictor["properties"]["containers"]["items"]
    if "properties" in items:  # the full schema: the field must be listed
        pre_stop = items["properties"]["lifecycle"]["properties"]["preStop"]["properties"]
        assert pre_stop["sleep"]["properties"]["seconds"]["type"] == "integer"
    else:  # the minimal schema keeps whatever the container holds
        assert items.get("x-kubernetes-preserve-unknown-fields") is True, items
