"""What the golden pipeline (pipelines/training.yaml) relies on in KFP KFP_VERSION, read from the
release's rendered install and sources (../shared/upstream/kfp), not remembered:

- its defaults name the installed object store: bucket, Service and port, Secret and keys;
- its deploy step runs as the account KFP runs every step as, which the project may let deploy;
- a failed task keeps none of its outputs (only its logs), so the validate step's report is the
  output of a step that succeeds, and `require-valid-data` fails the run after it;
- the UI's "Create run" sends every parameter's default, so the defaults are what a user runs.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from urllib.parse import urlparse

import pytest
import yaml

from pipelines.training import GOLDEN_YAML, ObjectStore, cluster_defaults
from tests.kfp.kfp_stack import ROOT, UPSTREAM, render

pytestmark = pytest.mark.skipif(
    not (UPSTREAM / "kfp-src.tar.gz").is_file(),
    reason=f"no KFP upstream sources at {UPSTREAM}",
)


def upstream_source(suffix: str, archive: str = "kfp-src.tar.gz") -> str:
    with tarfile.open(UPSTREAM / archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
        return tar.extractfile(member).read().decode()


def golden() -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(GOLDEN_YAML.read_text())
    return spec, platform


@pytest.fixture(scope="module")
def installed() -> dict[tuple[str, str], dict]:
    docs = render("local", SEAWEEDFS_IMAGE="example.local/seaweedfs:test", KFP_SMALL_NODE="0")
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_golden_defaults_name_the_installed_object_store(installed: dict) -> None:
    spec, platform = golden()
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    registry = urlparse(inputs["registry_uri"]["defaultValue"])
    assert registry.scheme == "s3"
    assert (
        registry.netloc == installed[("ConfigMap", "pipeline-install-config")]["data"]["bucketName"]
    )
    # Every step that reads or writes the registry gets the Secret's keys and the Service's URL.
    secret = installed[("Secret", "mlpipeline-minio-artifact")]
    keys = set(secret.get("stringData") or {}) | set(secret.get("data") or {})
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("ingest", "validate", "train", "evaluate", "register"):
        [env] = executors[f"exec-{step}"]["secretAsEnv"]
        assert env["secretName"] == secret["metadata"]["name"]
        assert {k["secretKey"] for k in env["keyToEnv"]} <= keys
    service = installed[("Service", "seaweedfs")]
    store = urlparse(ObjectStore().endpoint_url)
    assert store.hostname == f"seaweedfs.{service['metadata']['namespace']}"
    assert store.port in {p["port"] for p in service["spec"]["ports"]}
    env = {
        e["name"]: e["value"]
        for ex in spec["deploymentSpec"]["executors"].values()
        for e in ex["container"].get("env", [])
    }
    assert env["AWS_ENDPOINT_URL"] == ObjectStore().endpoint_url


def test_golden_deploy_step_runs_as_the_account_the_project_lets_deploy(installed: dict) -> None:
    spec, _ = golden()
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["deploy"]["defaultValue"] is True
    const = upstream_source("backend/src/apiserver/common/const.go")
    runner = re.search(r'DefaultPipelineRunnerServiceAccount\s*=\s*"([^"]+)"', const).group(1)
    assert ("ServiceAccount", runner) in installed
    rbac = list(yaml.safe_load_all((ROOT / "manifests/base/deployer-rbac.yaml").read_text()))
    [binding] = [d for d in rbac if d["kind"] == "RoleBinding"]
    assert binding["metadata"]["namespace"] == inputs["namespace"]["defaultValue"]
    assert {"kind": "ServiceAccount", "name": runner, "namespace": "kubeflow"} in binding[
        "subjects"
    ]


def test_golden_images_are_the_ones_make_images_tags_and_kind_load_loads() -> None:
    spec, _ = golden()
    serving = spec["root"]["inputDefinitions"]["parameters"]["serving_image"]["defaultValue"]
    assert serving == cluster_defaults()["serving_image"]
    dry = subprocess.run(
        ["make", "-n", "images", "kind-load", "CLUSTER=kind"], cwd=ROOT, capture_output=True,
        text=True,
    ).stdout  # fmt: skip
    loads = next(line for line in dry.splitlines() if "load docker-image" in line)
    loads = re.findall(r"[^\s;\\]+", loads)
    assert serving in loads
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} <= set(
        loads
    )


def test_a_failed_kfp_task_keeps_only_its_logs() -> None:
    """Why the report is an output of `validate` (which succeeds) and not of the failing step."""
    launcher = upstream_source("backend/src/v2/component/launcher_v2.go")
    assert re.search(
        r"if !componentSucceeded \{\s*//[^\n]*\n\s*artifacts = map\[string\]\*pipelinespec"
        r'\.ArtifactList\{"executor-logs": artifacts\["executor-logs"\]\}',
        launcher,
    ), "KFP's launcher now keeps a failed task's outputs: the report could move into one step"
    spec, _ = golden()
    validate = spec["components"]["comp-validate"]["outputDefinitions"]["artifacts"]
    assert validate["report"]["artifactType"]["schemaTitle"] == "system.Markdown"
    gate = spec["root"]["dag"]["tasks"]["require-valid-data"]["inputs"]["artifacts"]
    assert gate["report"]["taskOutputArtifact"] == {
        "outputArtifactKey": "report",
        "producerTask": "validate",
    }


def test_the_ui_create_run_sends_every_default() -> None:
    """tests/kfp/test_kfp_api.py sends what the UI sends: each default, typed by convertInput."""
    ui = upstream_source("frontend/src/lib/NewRunParametersUtils.ts", "kfp-frontend.tar.gz")
    initial = ui[ui.index("export function getInitialParameterState") :]
    assert "if (specParameters[key].defaultValue !== undefined)" in initial
    assert "runtimeParameters[key] = convertInput(" in initial
    spec, _ = golden()
    missing = [
        n
        for n, p in spec["root"]["inputDefinitions"]["parameters"].items()
        if "defaultValue" not in p
    ]
    assert not missing, f"the UI's form would make the user fill {missing}"


def test_the_in_cluster_retraining_trigger_trains_into_the_golden_registry() -> None:
    """The canary controller's trigger submits the golden YAML with its own registry_uri."""
    spec, _ = golden()
    registry = spec["root"]["inputDefinitions"]["parameters"]["registry_uri"]["defaultValue"]
    deployment = yaml.safe_load(
        (ROOT / "manifests/base/canary-controller/deployment.yaml").read_text()
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLOPS_KFP_HOST"]
    assert env["MLOPS_REGISTRY_URI"] == registry
