"""`make lint`'s manifest linter (hack/kubeconform/): kubeconform at KUBECONFORM_VERSION, built from
its Go module, validating the rendered kustomizations in strict mode against schemas made from the
pinned releases. The project's manifests pass; a misspelt field, in a built-in kind and in a
custom resource, is caught; the Makefile's lint runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.manifests.test_manifests import ROOT
from tests.upstream import pins

LINT = ROOT / "hack/kubeconform"


@pytest.fixture(scope="module")
def kubeconform() -> str:
    if shutil.which("go") is None or shutil.which("kubectl") is None:
        pytest.skip("go and kubectl are needed to build kubeconform and render the manifests")
    built = subprocess.run(["bash", str(LINT / "build.sh")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return built.stdout.strip().splitlines()[-1]


def _lint(kubeconform: str, config_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        k: pins()[k]
        for k in (
            "KUBERNETES_VERSION",
            "GATEWAY_API_VERSION",
            "PROMETHEUS_OPERATOR_VERSION",
            "KSERVE_SOURCE_COMMIT",
        )
    }
    script = LINT / "lint.py"
    if config_dir is not None:  # the same linter over another configuration
        for name in ("lint.py", "schemas.py"):
            shutil.copy(LINT / name, config_dir / name)
        script = config_dir / "lint.py"
    return subprocess.run(
        [sys.executable, str(script), kubeconform], capture_output=True, text=True, env=env
    )


def test_the_manifests_pass_the_linter(kubeconform: str) -> None:
    done = _lint(kubeconform)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in done.stdout


def test_a_misspelt_field_fails_it(kubeconform: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "objects.yaml").write_text(
        """apiVersion: v1
kind: ConfigMap
metadata: {name: x, namespace: mlops}
dat: {a: b}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: y, namespace: mlops}
spec:
  predictor:
    minReplica: 1
    containers: [{name: kserve-container, image: x}]
"""
    )
    (bad / "kustomization.yaml").write_text("resources: [objects.yaml]\n")
    config = yaml.safe_load((LINT / "config.yaml").read_text())
    config["kustomizations"] = [str(bad)]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    done = _lint(kubeconform, tmp_path)
    assert done.returncode != 0
    assert "ConfigMap x is invalid" in done.stdout and "'dat'" in done.stdout, done.stdout
    assert "InferenceService y is invalid" in done.stdout and "'minReplica'" in done.stdout


def test_make_lint_runs_it_and_the_version_is_pinned() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lint = makefile[makefile.index("\nlint:") + 1 :].split("\n\n", 1)[0]
    assert "kubeconform" in lint.splitlines()[0] and "hack/kubeconform/lint.py" in lint
    assert pins()["KUBECONFORM_VERSION"].startswith("v")
