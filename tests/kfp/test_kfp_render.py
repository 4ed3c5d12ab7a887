"""The KFP install renders from the pinned release's kustomize, with every image a local build.

Reads the upstream manifests and sources at KFP_VERSION (../shared/upstream/kfp), so each name the
install relies on (image names, the executor flag, the driver/launcher variables, the Deployments
it leaves out) is checked against the release, not remembered.
"""

from __future__ import annotations

import re
import tarfile

import pytest

from tests.kfp.kfp_stack import UPSTREAM, containers, local_images, render, versions
from tests.upstream import go_module_dir

pytestmark = pytest.mark.skipif(
    not (UPSTREAM / "kfp-src.tar.gz").is_file(),
    reason=f"no KFP upstream sources at {UPSTREAM} (on a laptop the release images are pulled instead)",
)

LEFT_OUT = {
    "cache-deployer-deployment",
    "cache-server",
    "metadata-writer",
    "ml-pipeline-viewer-crd",
    "ml-pipeline-visualizationserver",
}


@pytest.fixture(scope="module")
def release() -> list[dict]:
    return render("release", KFP_SMALL_NODE="0")


@pytest.fixture(scope="module")
def local() -> list[dict]:
    return render("local", SEAWEEDFS_IMAGE="example.local/seaweedfs:test", KFP_SMALL_NODE="0")


def deployments(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def test_release_render_names_the_pinned_release_images(release: list[dict]) -> None:
    pins = versions()
    images = {c["image"] for d in deployments(release).values() for c in containers(d)}
    assert f"ghcr.io/kubeflow/kfp-api-server:{pins['KFP_VERSION']}" in images
    assert f"quay.io/argoproj/workflow-controller:{pins['ARGO_WORKFLOWS_VERSION']}" in images
    assert set(deployments(release)) >= LEFT_OUT, (
        "a Deployment the local install leaves out is gone upstream"
    )


def test_local_render_uses_only_images_built_here(local: list[dict]) -> None:
    built = set(local_images()) | {"example.local/seaweedfs:test"}
    used = {c["image"] for d in deployments(local).values() for c in containers(d)}
    assert used <= built, f"images not built here: {sorted(used - built)}"
    assert not LEFT_OUT & set(deployments(local))


def test_local_render_points_argo_and_the_v2_engine_at_local_images(local: list[dict]) -> None:
    pins = versions()
    deploys = deployments(local)
    args = deploys["workflow-controller"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        args[args.index("--executor-image") + 1]
        == f"mlops-kfp/argoexec:{pins['ARGO_WORKFLOWS_VERSION']}"
    )
    api = next(
        c for c in containers(deploys["ml-pipeline"]) if c["name"] == "ml-pipeline-api-server"
    )
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["V2_DRIVER_IMAGE"] == f"mlops-kfp/driver:{pins['KFP_VERSION']}"
    assert env["V2_LAUNCHER_IMAGE"] == f"mlops-kfp/launcher:{pins['KFP_VERSION']}"


def test_the_metadata_envoy_runs_the_grpc_web_translator_towards_mlmd(local: list[dict]) -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in local}
    envoy = docs[("Deployment", "metadata-envoy-deployment")]["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert envoy["command"] == ["/bin/metadata_grpc_web"]
    assert envoy["args"] == ["--listen_port=9090", "--upstream=metadata-grpc-service:8080"]
    grpc = docs[("Service", "metadata-grpc-service")]["spec"]["ports"]
    assert 8080 in {p["port"] for p in grpc}
    ui_side = docs[("Service", "metadata-envoy-service")]["spec"]["ports"]
    assert 9090 in {p["port"] for p in ui_side}


def test_the_api_server_reads_the_driver_and_launcher_variables_the_patch_sets() -> None:
    with tarfile.open(UPSTREAM / "kfp-src.tar.gz") as tar:
        member = next(
            m for m in tar.getmembers() if m.name.endswith("v2/compiler/argocompiler/container.go")
        )
        source = tar.extractfile(member).read().decode()
    assert re.search(r'DriverImageEnvVar\s*=\s*"V2_DRIVER_IMAGE"', source)
    assert re.search(r'LauncherImageEnvVar\s*=\s*"V2_LAUNCHER_IMAGE"', source)


def test_the_database_deployment_passes_the_mysql_flags_the_mariadb_entrypoint_maps(
    local: list[dict],
) -> None:
    mysql = deployments(local)["mysql"]["spec"]["template"]["spec"]["containers"][0]
    mapped = {
        "--authentication-policy=mysql_native_password",
        "--mysql-native-password=ON",
        "--disable-log-bin",
    }
    assert mapped <= set(mysql["args"]), (
        "KFP's MySQL flags changed: revisit hack/kfp/mariadb-entrypoint.sh"
    )


def test_stateful_pods_own_their_hostpath_volume_first(local: list[dict]) -> None:
    """The offline node's PVs are hostPath, which gets no fsGroup: a root init container chowns."""
    deploys = deployments(local)
    for name, uid in (("mysql", 999), ("seaweedfs", 1000)):
        spec = deploys[name]["spec"]["template"]["spec"]
        assert spec["securityContext"]["fsGroup"] == uid
        [init] = spec["initContainers"]
        assert init["command"][:2] == ["chown", f"{uid}:{uid}"]
        assert init["volumeMounts"][0]["mountPath"] == init["command"][2]


SMALL_NODE = {
    "ml-pipeline": "ml-pipeline-api-server",
    "ml-pipeline-persistenceagent": "ml-pipeline-persistenceagent",
    "workflow-controller": "workflow-controller",
    "mysql": "mysql",
}


@pytest.mark.parametrize("images", ["local", "release"])
def test_a_small_node_lowers_only_the_cpu_requests(images: str, release: list[dict]) -> None:
    small = deployments(render(images, KFP_SMALL_NODE="1"))
    full = deployments(release)
    for name, container in SMALL_NODE.items():
        [first, *_] = small[name]["spec"]["template"]["spec"]["containers"]
        upstream = full[name]["spec"]["template"]["spec"]["containers"][0]
        assert first["name"] == container
        assert first["resources"]["requests"]["cpu"] == "20m"
        assert upstream["resources"]["requests"]["cpu"] != "20m"
        assert first["resources"].get("limits") == upstream["resources"].get("limits")
        assert (
            first["resources"]["requests"]["memory"] == upstream["resources"]["requests"]["memory"]
        )


def test_argo_looks_at_a_run_again_within_two_seconds(
    release: list[dict], local: list[dict]
) -> None:
    """DEFAULT_REQUEUE_TIME, the variable Argo reads at ARGO_WORKFLOWS_VERSION, is set to 2s on the
    workflow controller in both renders (Argo's 10 s default is paid twice per KFP step)."""
    for docs in (release, local):
        controller = deployments(docs)["workflow-controller"]["spec"]["template"]["spec"]
        (container,) = [c for c in controller["containers"] if c["name"] == "workflow-controller"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("DEFAULT_REQUEUE_TIME") == "2s", env
    source = go_module_dir(
        "github.com/argoproj/argo-workflows/v4", versions()["ARGO_WORKFLOWS_VERSION"]
    )
    common = (source / "workflow/common/common.go").read_text()
    assert re.search(r'EnvVarDefaultRequeueTime\s*=\s*"DEFAULT_REQUEUE_TIME"', common)
    limiter = (source / "workflow/controller/rate_limiters.go").read_text()
    assert "common.EnvVarDefaultRequeueTime, 10*time.Second" in limiter
