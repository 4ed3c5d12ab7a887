"""The KFP UI served from the cluster, driven in headless Chromium: upload pipelines/training.yaml,
create a run with the defaults, see it succeed with its metrics (ROC AUC, confusion matrix) and the
validation report; the run graph's screenshot is kept as build/kfp-ui/run-graph.png (the README
shows a copy, docs/images/kfp-run-graph.png).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kfp.kfp_cluster import FACTS, KfpCluster, port_forward
from tests.kfp.kfp_stack import ROOT, run_hack

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

OUT = ROOT / "build" / "kfp-ui"


@pytest.fixture(scope="module")
def ui_python() -> str:
    result = run_hack("browser (chromium, selenium)", ["bash", "hack/kfp/ensure-browser.sh"])
    if result.returncode == 3:
        pytest.skip(f"no headless Chromium and cannot install it here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_ui_upload_run_and_results(kfp_cluster: KfpCluster, ui_python: str) -> None:
    with port_forward(kfp_cluster.context, "kubeflow", "svc/ml-pipeline-ui", 80) as port:
        result = subprocess.run(
            [ui_python, str(ROOT / "tests" / "kfp" / "ui_flow.py"), f"http://127.0.0.1:{port}",
             str(ROOT / "pipelines" / "training.yaml"), str(OUT)],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    FACTS["UI run wall time (upload to done)"] = (
        f"{seen.get('run_seconds')} s ({seen.get('state')})"
    )
    assert seen["state"] == "SUCCEEDED"
    assert (OUT / "run-graph.png").stat().st_size > 10_000
    for step in ("ingest", "validate", "require-valid-data", "train", "evaluate", "deploy"):
        assert step in seen["graph_text"]
    # The evaluate step's Metrics (ROC AUC) and ClassificationMetrics (confusion matrix).
    evaluate = " ".join(seen["evaluate"].values()).lower()
    assert "roc_auc" in evaluate, evaluate[:3000]
    assert "confusion" in evaluate, evaluate[:3000]
    # The validate step's Markdown report, rendered in its Visualization tab.
    validate = seen["validate"]["report"]
    assert "Data validation report" in validate and "Status: PASSED" in validate, validate[:3000]
