"""Every overlay's manifests, rendered with kustomize, are accepted by a real kube-apiserver
(server-side dry run with strict field validation) once the pinned upstream CRDs are installed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.apiserver.project_manifests import OVERLAYS

pytestmark = pytest.mark.apiserver


def test_there_are_overlays_to_check() -> None:
    assert OVERLAYS, "no manifests/overlays/*/kustomization.yaml found"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_is_accepted_by_the_api_server(overlay: Path, kubectl, crds) -> None:
    rendered = kubectl.run("kustomize", str(overlay)).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    assert objects, f"{overlay} renders no objects"

    # A namespaced object can only be dry-run into an existing namespace: create every namespace
    # the overlay declares or uses, for real.
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    namespaces |= {o["metadata"]["namespace"] for o in objects if o["metadata"].get("namespace")}
    for name in sorted(namespaces):
        manifest = yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        kubectl.run(
            "apply", "--server-side", "--field-manager=mlops-tests", "-f", "-", stdin=manifest
        )

    done = kubectl.run(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        "-o",
        "name",
        stdin=rendered,
        check=False,
    )
    assert done.returncode == 0, f"the API server rejected {overlay.name}:\n{done.stderr}"
    accepted = done.stdout.split()
    assert len(accepted) == len(objects), (
        f"{len(objects)} objects rendered, {len(accepted)} accepted:\n{done.stdout}"
    )


@pytest.mark.parametrize(
    ("predictor", "named"),
    [
        ({"sklearnn": {}}, "sklearnn"),  # misspelt field
        ({"canaryTrafficPercent": "ten"}, "canaryTrafficPercent"),  # wrong type
    ],
    ids=["unknown-field", "wrong-type"],
)
def test_an_invalid_inference_service_is_rejected(
    kubectl, crds, namespace, predictor, named
) -> None:
    """The check above can fail: the InferenceService schema refuses what KServe would not take."""
    manifest = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "broken", "namespace": namespace},
        "spec": {"predictor": predictor},
    }
    done = kubectl.run(
        "apply",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=yaml.safe_dump(manifest),
        check=False,
    )
    assert done.returncode != 0
    assert named in done.stderr
