"""What `make run` submits: the pipeline compiled for an image tag, with the object store's
credentials on every step that touches the registry, and the deploy step switched on."""

from __future__ import annotations

import pytest
import yaml

from pipelines.training import ObjectStore, build_training_pipeline


def compiled(tmp_path, **kwargs) -> list[dict]:
    from kfp import compiler

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(build_training_pipeline(**kwargs), package_path=str(path))
    return list(yaml.safe_load_all(path.read_text()))


def test_cluster_compile_uses_the_image_and_attaches_the_store(tmp_path) -> None:
    spec, platform = compiled(
        tmp_path, image="mlops-platform/components:abc123", object_store=ObjectStore()
    )
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"mlops-platform/components:abc123"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    with_secret = {
        name
        for name, cfg in executors.items()
        if any(s["secretName"] == "mlpipeline-minio-artifact" for s in cfg.get("secretAsEnv", []))
    }
    assert {
        f"exec-{s}" for s in ("ingest", "validate", "train", "evaluate", "gate", "register")
    } <= with_secret
    assert "exec-deploy" not in with_secret  # the deploy step needs the Kubernetes API only
    env = {
        e["name"]: e["value"]
        for cfg in spec["deploymentSpec"]["executors"].values()
        for e in cfg["container"].get("env", [])
    }
    assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs.kubeflow:9000"


def test_local_compile_has_the_deploy_step_off_by_default(tmp_path) -> None:
    (spec,) = compiled(tmp_path, image="x:1")
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy"]["defaultValue"] is False
    assert "deploy" in spec["root"]["dag"]["tasks"]


def test_waiting_on_an_unreachable_kfp_api_is_one_clear_error() -> None:
    from pipelines.submit import SubmitError, SubmittedRun, wait_for_run

    run = SubmittedRun(run_id="r-1", url="http://localhost:8888/#/runs/details/r-1", package="")
    with pytest.raises(
        SubmitError, match=r"^cannot follow run r-1 at the KFP API http://127\.0\.0\.1:9"
    ):
        wait_for_run(run, host="http://127.0.0.1:9", timeout_s=5)
