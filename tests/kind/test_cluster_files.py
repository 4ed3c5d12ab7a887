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

from components import isvc_metadata
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
def test_docs_and_status_name_the_host_kserve_generates() -> None:
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

    # The cluster page of the documentation (docs/cluster.md): its "Train and serve" section.
    page = (ROOT / "docs" / "cluster.md").read_text()
    start = page.index("\n## Train and serve")
    section = page[start : page.index("\n## ", start + 1)]
    hosts = set(re.findall(r"Host: ([\w.-]+)", section))
    assert hosts == {render_host("churn")}, hosts
    # The predictor's own route (KServe names it after PredictorServiceName without predictor.name).
    assert render_host("churn-predictor") in section
    assert "churn.mlops.example.com" not in page
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
    listed = re.search(r"ROLLOUT_ANNOTATIONS='(\[.*?\])'", DEPLOY, re.S)
    assert listed, "hack/deploy.sh has no ROLLOUT_ANNOTATIONS"
    # Every one the platform writes (isvc_metadata names them all; the model version changes on
    # promotion: on the pods it would restart them then).
    assert set(yaml.safe_load(listed.group(1))) == set(isvc_metadata.ANNOTATIONS)
    assert "inferenceService.serviceAnnotationDisallowedList=$ROLLOUT_ANNOTATIONS" in DEPLOY
    assert isvc_metadata.LABELS == ("mlops.platform/rollout-step",)
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


# --- issue 24: what broke `make deploy`, `make canary` and reruns against the pinned upstreams ---
STATUS = (ROOT / "hack" / "status.sh").read_text()
CLUSTER_SH = (ROOT / "hack" / "cluster.sh").read_text()
CANARY_SH = (ROOT / "hack" / "canary.sh").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def make_dry(*args: str) -> str:
    done = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def deploy_env(path: str) -> dict[str, str]:
    p = pins()
    names = ("KSERVE_VERSION", "KFP_VERSION", "PROMETHEUS_OPERATOR_VERSION", "GATEWAY_API_VERSION")
    names += ("TRAEFIK_VERSION", "SEAWEEDFS_IMAGE_TAG")
    return {"PATH": path, "HOME": "/tmp", **{n: p[n] for n in names}}


def tool_dir(tmp_path: Path, without: set[str]) -> str:
    """A PATH with the tools hack/deploy.sh may call, as links to the real ones, minus `without`."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "kubectl", "jq", "openssl", "base64", "python3"):
        real = shutil.which(tool)
        if tool in without or real is None:
            continue
        (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def test_deploy_names_every_missing_tool_on_one_line_before_any_work(tmp_path: Path) -> None:
    """Item 1: a missing jq (or openssl, or PyYAML) stops `make deploy` at once, on one line."""
    done = subprocess.run(
        ["bash", str(ROOT / "hack" / "deploy.sh"), "all"],
        env={**deploy_env(tool_dir(tmp_path, without={"jq", "openssl"})), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: make deploy needs jq openssl: not found"), line
    assert "no cluster reachable" not in done.stderr and not done.stdout  # nothing was tried


def test_deploy_check_passes_with_every_tool() -> None:
    import shutil

    missing = [t for t in ("kubectl", "jq", "openssl", "base64") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"this machine lacks {missing}: the all-present case cannot run here")
    done = subprocess.run(
        ["bash", str(ROOT / "hack" / "deploy.sh"), "check"],
        env={**deploy_env(__import__("os").environ["PATH"]), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "every tool found" in done.stdout


def test_make_deploy_runs_on_the_venv_python() -> None:
    rule = re.search(r"^deploy: (.*)$", MAKEFILE, re.M)
    assert rule and "$(INSTALLED)" in rule.group(1)
    dry = make_dry("deploy", "-W", ".venv/.installed")  # -W: as if the venv were just made
    assert re.search(r"PYTHON=\S*/\.venv/bin/python \S*.* hack/deploy\.sh", dry), dry


def test_a_failure_inside_a_command_substitution_stops_the_deploy() -> None:
    """bash clears errexit inside $(...) unless inherit_errexit is set: `ca=$(sign_webhook_certs
    ...)` then went on after a failing jq. Run the script's own preamble with such a failure."""
    preamble = DEPLOY[: DEPLOY.index("cd ")]
    assert "shopt -s inherit_errexit" in preamble
    script = preamble + 'f() { false; echo "went on"; }\nout=$(f)\necho "after: $out"\n'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert done.returncode != 0 and "went on" not in done.stdout and "after" not in done.stdout
    # The certificates are read before the loop, so a failure of the reader stops it too.
    body = function_body(DEPLOY, "sign_webhook_certs")
    assert "< <(" not in body and 'certs=$(manifests "$src" --certificates)' in body


def test_the_project_namespace_is_not_a_setting() -> None:
    """Item 2: the base hard-codes mlops, monitoring and kubeflow (and a kustomize `namespace:`
    would move objects that must stay), so NAMESPACE is gone: the scripts name the namespace the
    manifests declare, and every project object lives in one of the two namespaces they make."""
    for name, text in (
        ("hack/deploy.sh", DEPLOY),
        ("hack/status.sh", STATUS),
        ("Makefile", MAKEFILE),
    ):
        assert not re.search(r"\$\{?NAMESPACE\b|\$\$\{NAMESPACE", text), name
        assert not re.search(r"^NAMESPACE=", text, re.M), name
    for text in (DEPLOY, STATUS):
        (declared,) = re.findall(r"^PROJECT_NAMESPACE=(\S+)$", text, re.M)
        assert declared == "mlops"
    objs = project_objects()
    made = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"}
    assert made == {"mlops", "monitoring"}
    # ... and kubeflow (KFP's, installed by the deploy): the policy that admits the model servers.
    for obj in objs:
        if obj["kind"] not in {
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterStorageContainer",
        }:
            assert obj["metadata"]["namespace"] in made | {"kubeflow"}, obj["metadata"]
    assert "-n mlops " in make_dry("undeploy")


def test_minikube_uses_a_driver_that_maps_the_gateway_port(tmp_path: Path) -> None:
    """Item 3: `minikube start --ports` works with the docker and podman drivers only."""
    start = CLUSTER_SH[CLUSTER_SH.index("    minikube start -p") :].split(";;")[0]
    assert '--driver "$MINIKUBE_DRIVER"' in start and "--ports 31080:31080" in start
    assert re.search(r"^MINIKUBE_DRIVER=\$\{MINIKUBE_DRIVER:-docker\}$", CLUSTER_SH, re.M)
    done = subprocess.run(
        ["bash", str(ROOT / "hack" / "cluster.sh"), "create"],
        env={"PATH": "/usr/bin:/bin", "CLUSTER": "minikube", "MINIKUBE_DRIVER": "kvm2",
             "KIND_NODE_IMAGE": "x", "MINIKUBE_KUBERNETES_VERSION": "v1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "MINIKUBE_DRIVER=kvm2" in line and "port-forward" in line


def test_make_canary_finds_the_clusters_registry_and_prometheus_itself() -> None:
    """Item 4: the version is the cluster registry's, and Prometheus is port-forwarded by the
    target (the same Service the in-cluster controller reads), no manual step first."""
    from pipelines.training import ObjectStore

    (registry,) = re.findall(r"^CLUSTER_REGISTRY_URI \?= (\S+)$", MAKEFILE, re.M)
    assert registry == ObjectStore().registry_uri
    (controller,) = [
        o for o in project_objects() if o["kind"] == "Deployment"
        and o["metadata"]["name"] == "mlops-canary-controller"
    ]  # fmt: skip
    env = {
        e["name"]: e.get("value")
        for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MLOPS_REGISTRY_URI"] == registry
    (service,) = re.findall(r"^PROMETHEUS_SERVICE=(\S+)$", CANARY_SH, re.M)
    (port,) = re.findall(r"^PROMETHEUS_PORT=(\d+)$", CANARY_SH, re.M)
    ns, name = service.split("/")
    assert env["MLOPS_PROMETHEUS_URL"] == f"http://{name}.{ns}.svc:{port}"
    assert "hack/canary.sh" in make_dry("canary", "VERSION=2", "-W", ".venv/.installed")
    assert '--prometheus "http://127.0.0.1:$port"' in CANARY_SH
    assert '--registry "$CLUSTER_REGISTRY_URI"' in CANARY_SH


def test_kubectl_port_forward_prints_the_line_make_canary_reads() -> None:
    p = pins()
    client_go = go_module_dir("k8s.io/client-go", p["KUBERNETES_VERSION"].replace("v1.", "v0."))
    source = (client_go / "tools/portforward/portforward.go").read_text()
    assert '"Forwarding from %s -> %d\\n"' in source
    assert "Forwarding from 127\\.0\\.0\\.1:([0-9]+) " in CANARY_SH


def test_make_canary_says_what_it_needs_on_one_line() -> None:
    done = subprocess.run(
        ["make", "canary", "VERSION=two", "-W", ".venv/.installed"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "usage: make canary VERSION=<registered version number> (got 'two')" in done.stderr


def test_no_step_is_cached() -> None:
    """Item 5: a rerun with the same arguments registers and deploys again, on the data the URL
    holds now, compared with today's champion. KFP's driver caches a task only when
    cachingOptions.enableCache is true (proto3: absent is false)."""
    driver = kfp_file("backend/src/v2/driver/container.go")
    assert "opts.Task.GetCachingOptions().GetEnableCache()" in driver
    golden, *_ = yaml.safe_load_all((ROOT / "pipelines" / "training.yaml").read_text())
    tasks = golden["root"]["dag"]["tasks"]
    cached = {name for name, t in tasks.items() if t["cachingOptions"].get("enableCache")}
    assert not cached
    assert {"ingest", "validate", "evaluate", "gate", "register", "deploy"} <= set(tasks)


def test_batch_scoring_steps_reach_the_object_store_like_training_does() -> None:
    """Item 6: every batch scoring step gets the store's endpoint and credentials."""
    from pipelines.training import ObjectStore

    store = ObjectStore()
    ir, platform = yaml.safe_load_all((ROOT / "pipelines" / "batch_scoring.yaml").read_text())
    executors = ir["deploymentSpec"]["executors"]
    secrets = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(secrets) == set(executors) == {"exec-batch-score", "exec-batch-drift"}
    for name, executor in executors.items():
        env = {e["name"]: e["value"] for e in executor["container"]["env"]}
        assert env["AWS_ENDPOINT_URL"] == store.endpoint_url, name
        (secret,) = secrets[name]["secretAsEnv"]
        assert secret["secretName"] == store.secret_name
        assert {k["envVar"]: k["secretKey"] for k in secret["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID": store.access_key_field,
            "AWS_SECRET_ACCESS_KEY": store.secret_key_field,
        }


# --- issue 24, smaller points ------------------------------------------------------------------
def gateway_objects(*args: str) -> list[dict[str, Any]]:
    return render(ROOT / "manifests" / "gateway", *args)


def traefik_args() -> list[str]:
    (deployment,) = [o for o in gateway_objects() if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_traefiks_image_tag_comes_from_versions_mk() -> None:
    p = pins()
    assert "traefik:v" not in (ROOT / "manifests/gateway/traefik.yaml").read_text()
    (option,) = re.findall(r'--image "(traefik=[^"]+)"', function_body(DEPLOY, "install_gateway"))
    image = option.replace(
        "${TRAEFIK_IMAGE:-traefik:$TRAEFIK_VERSION}", f"traefik:{p['TRAEFIK_VERSION']}"
    )
    (deployment,) = [o for o in gateway_objects("--image", image) if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"traefik:{p['TRAEFIK_VERSION']}"


def test_a_redeploy_rolls_the_controller_once_to_this_checkouts_image() -> None:
    body = function_body(DEPLOY, "install_project")
    assert "set image" not in body and "serving:latest" not in DEPLOY
    (option,) = re.findall(r'--image "(mlops-platform/serving=[^"]+)"', body)
    assert option.startswith("mlops-platform/serving=${SERVING_IMAGE:?")
    (option,) = re.findall(r'--image "(mlops-platform/components=[^"]+)"', body)
    assert option.startswith("mlops-platform/components=${COMPONENT_IMAGE:?")
    (option,) = re.findall(r'--image "(mlops-platform/online-store=[^"]+)"', body)
    assert option.startswith("mlops-platform/online-store=${ONLINE_STORE_IMAGE:?")
    objs = render(
        ROOT / "manifests" / "overlays" / "dev",
        "--image", "mlops-platform/serving=reg/s:abc",
        "--image", "mlops-platform/components=reg/c:abc",
        "--image", "mlops-platform/online-store=reg/o:abc",
    )  # fmt: skip
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    # the controller and the dashboard (manifests/base/dashboard) run the serving image; the Dask
    # operator and the feature server the component image, which has both installed; Redis its own
    images = {
        name: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for name, d in deployments.items()
    }
    assert images == {
        "mlops-canary-controller": "reg/s:abc",
        "mlops-dashboard": "reg/s:abc",
        "mlops-dask-operator": "reg/c:abc",
        "mlops-feature-server": "reg/c:abc",
        "mlops-online-store": "reg/o:abc",
    }
    dry = make_dry("deploy", "-W", ".venv/.installed")
    assert re.search(
        r"SERVING_IMAGE=mlops-platform/serving:\S+ COMPONENT_IMAGE=mlops-platform/components:\S+ "
        r"ONLINE_STORE_IMAGE=mlops-platform/online-store:\S+ hack/deploy\.sh",
        dry,
    ), dry


def test_traefik_enforces_the_route_timeout_kserve_would_write() -> None:
    """Traefik 3.6's gateway provider implements no HTTPRoute timeouts (no HTTPRouteRequestTimeout
    feature; httproute.go never reads rule.Timeouts): KServe writes none, and Traefik applies
    KServe's default to every backend through its default servers transport."""
    p = pins()
    traefik = go_module_dir("github.com/traefik/traefik/v3", p["TRAEFIK_VERSION"])
    gateway = traefik / "pkg/provider/kubernetes/gateway"
    assert "HTTPRouteRequestTimeout" not in (gateway / "features.go").read_text()
    assert ".Timeouts" not in (gateway / "httproute.go").read_text()
    static = (traefik / "pkg/config/static/static_config.go").read_text()
    for tag in ("serversTransport", "forwardingTimeouts", "responseHeaderTimeout"):
        assert f'json:"{tag},omitempty"' in static
    reconciler = kserve_file(
        "pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/httproute_reconciler.go"
    )
    (default_s,) = re.findall(r"var DefaultTimeout = toGatewayAPIDuration\((\d+)\)", reconciler)
    assert (
        f"--serversTransport.forwardingTimeouts.responseHeaderTimeout={default_s}s"
        in traefik_args()
    )
    assert 'json:"disableHTTPRouteTimeout,omitempty"' in kserve_file(
        "pkg/apis/serving/v1beta1/configmap.go"
    )
    assert "inferenceservice-config:ingress.disableHTTPRouteTimeout=true" in function_body(
        DEPLOY, "install_kserve"
    )


def test_traefik_reads_secrets_and_configmaps_only_where_it_watches_routes() -> None:
    """Traefik's gateway provider informs Secrets and ConfigMaps in every namespace it watches
    (client.go), so those rights cannot go; they are granted in the two watched namespaces only."""
    p = pins()
    traefik = go_module_dir("github.com/traefik/traefik/v3", p["TRAEFIK_VERSION"])
    client_go = (traefik / "pkg/provider/kubernetes/gateway/client.go").read_text()
    loop = client_go[client_go.index("for _, ns := range namespaces {") :]
    assert "Secrets().Informer()" in loop and "ConfigMaps().Informer()" in loop
    provider = (traefik / "pkg/provider/kubernetes/gateway/kubernetes.go").read_text()
    assert 'json:"namespaces,omitempty"' in provider
    (flag,) = [
        a for a in traefik_args() if a.startswith("--providers.kubernetesgateway.namespaces=")
    ]
    watched = flag.split("=", 1)[1].split(",")
    gateway = next(o for o in gateway_objects() if o["kind"] == "Gateway")
    assert set(watched) == {gateway["metadata"]["namespace"], "mlops"}
    body = function_body(DEPLOY, "install_gateway")
    granted = re.findall(r'--namespaced-rbac "?([\w$]+)"?', body)
    assert [g.replace("$PROJECT_NAMESPACE", "mlops") for g in granted] == watched
    rbac = traefik / "docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml"
    objs = render(
        rbac, "--subject-namespace", "traefik", *[f"--namespaced-rbac={n}" for n in watched]
    )
    (cluster_role,) = [o for o in objs if o["kind"] == "ClusterRole"]
    cluster_wide = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_wide == {"namespaces", "gatewayclasses", "gatewayclasses/status"}
    roles = {o["metadata"]["namespace"]: o for o in objs if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objs if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == set(watched)
    for ns in watched:
        resources = {r for rule in roles[ns]["rules"] for r in rule["resources"]}
        assert {"secrets", "configmaps", "services", "httproutes", "gateways"} <= resources
        assert bindings[ns]["roleRef"] == {**cluster_role_ref(objs), "kind": "Role"}
        assert bindings[ns]["subjects"] == [
            {"kind": "ServiceAccount", "name": "traefik-controller", "namespace": "traefik"}
        ]
    # The scope of what stays cluster-wide, from the Gateway API CRDs at the pinned version.
    crd = go_module_dir("sigs.k8s.io/gateway-api", p["GATEWAY_API_VERSION"]) / (
        "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml"
    )
    assert yaml.safe_load(crd.read_text())["spec"]["scope"] == "Cluster"


def cluster_role_ref(objs: list[dict[str, Any]]) -> dict[str, str]:
    (binding,) = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    return binding["roleRef"]


def test_prometheus_reads_pods_in_the_project_namespace_only() -> None:
    """A PodMonitor without a namespaceSelector makes the operator discover pods in the
    PodMonitor's own namespace (promcfg.go, getNamespacesFromNamespaceSelector)."""
    module = "github.com/prometheus-operator/prometheus-operator"
    promcfg = (
        go_module_dir(module, pins()["PROMETHEUS_OPERATOR_VERSION"]) / "pkg/prometheus/promcfg.go"
    ).read_text()
    fn = promcfg[promcfg.index("func (cg *ConfigGenerator) getNamespacesFromNamespaceSelector") :]
    assert "len(nsel.MatchNames) == 0 {\n\t\treturn []string{namespace}" in fn
    objs = project_objects()
    assert not [
        o for o in objs if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}
        and "prometheus" in o["metadata"]["name"]
    ]  # fmt: skip
    monitors = [o for o in objs if o["kind"] == "PodMonitor"]
    assert monitors and all(m["metadata"]["namespace"] == "mlops" for m in monitors)
    assert all("namespaceSelector" not in m["spec"] for m in monitors)
    (role,) = [
        o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "mlops-prometheus"
    ]
    assert role["metadata"]["namespace"] == "mlops"
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    (binding,) = [
        o
        for o in objs
        if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "mlops-prometheus"
    ]
    (prometheus,) = [o for o in objs if o["kind"] == "Prometheus"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": prometheus["spec"]["serviceAccountName"],
         "namespace": prometheus["metadata"]["namespace"]}
    ]  # fmt: skip


def test_standard_mode_status_is_read_where_kserve_writes_it() -> None:
    """Standard mode reports a canary's split in status.canaryStatuses (name, ready,
    trafficPercent); status.components.predictor.traffic is Knative mode's."""
    from components import isvc_traffic as traffic

    status_go = kserve_file("pkg/apis/serving/v1beta1/inference_service_status.go")
    assert 'CanaryStatuses []CanaryStatus `json:"canaryStatuses,omitempty"`' in status_go
    fields = status_go[status_go.index("type CanaryStatus struct") :].split("\n}\n")[0]
    for tag in ('json:"name"', 'json:"ready"', 'json:"trafficPercent"'):
        assert tag in fields
    isvc = {"status": {"canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 25}]}}
    assert traffic.MODES["standard"].observed(isvc)[0] == 25
    assert traffic.MODES["serverless"].observed(isvc) == (None, [])


def test_the_fault_tests_find_prometheus_pods_by_the_operators_name_label() -> None:
    """tests/kind/test_cluster.py stops and restarts Prometheus through its resource and waits for
    its pods by `operator.prometheus.io/name=<resource>`: the label the operator's StatefulSet puts
    on them (read at PROMETHEUS_OPERATOR_VERSION), on the project's Prometheus `mlops`."""
    from tests.kind.test_cluster import PROMETHEUS_PODS

    operator = go_module_dir(
        "github.com/prometheus-operator/prometheus-operator", pins()["PROMETHEUS_OPERATOR_VERSION"]
    )
    common = (operator / "pkg/prometheus/common.go").read_text()
    assert 'PrometheusNameLabelName = "operator.prometheus.io/name"' in common
    objs = yaml.safe_load_all((ROOT / "manifests/base/monitoring/prometheus.yaml").read_text())
    (prometheus,) = [o for o in objs if o and o["kind"] == "Prometheus"]
    assert f"operator.prometheus.io/name={prometheus['metadata']['name']}" == PROMETHEUS_PODS


def test_the_fault_tests_stop_seaweedfs_by_the_names_kfp_gives_it() -> None:
    """tests/kind/test_cluster.py stops the object store by its Deployment and deletes its pod by
    label, and expects every registered version back afterwards: KFP's SeaweedFS (at KFP_VERSION)
    keeps its data on a PersistentVolumeClaim, not in the pod."""
    from tests.kind.test_cluster import SEAWEEDFS

    namespace, deployment, pods = SEAWEEDFS
    doc = yaml.safe_load(
        kfp_file(
            "manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml"
        )
    )
    assert (doc["kind"], doc["metadata"]["namespace"]) == ("Deployment", namespace)
    assert f"deployment/{doc['metadata']['name']}" == deployment
    key, value = pods.split("=")
    assert doc["spec"]["template"]["metadata"]["labels"][key] == value
    volumes = doc["spec"]["template"]["spec"]["volumes"]
    data = next(
        m
        for m in doc["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        if m["mountPath"] == "/data"
    )
    (volume,) = [v for v in volumes if v["name"] == data["name"]]
    assert "persistentVolumeClaim" in volume, volume
