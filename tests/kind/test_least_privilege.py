"""Least privilege on the kind cluster: the `mlops` namespace enforces Pod Security `restricted`
and every pod the project runs there (the model servers with KServe's storage initializer, the
controller, the dashboard) is admitted under it. (The NetworkPolicies are evaluated in
tests/manifests/test_network_policy.py: this kind node's bridge CNI does not enforce them.)
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.kind.cluster_harness import CONTEXT, kube_json, kubectl

pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(600)]

NAMESPACE = "mlops"


def test_the_namespace_enforces_restricted(kind_cluster) -> None:  # type: ignore[no-untyped-def]
    labels = kube_json("get", "namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # The API server itself refuses a pod that breaks the standard (a server-side dry run).
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "psa-probe", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "mlops-platform/serving"}]},
    }
    refused = subprocess.run(
        ["kubectl", "--context", CONTEXT, "create", "--dry-run=server", "-f", "-"],
        input=json.dumps(pod),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr, refused.stderr


def test_every_running_pod_in_the_namespace_meets_restricted(kind_cluster) -> None:  # type: ignore[no-untyped-def]
    """Re-labelling the namespace with a server-side dry run makes the API server check the pods
    already running and warn about each that would be refused: no warning."""
    pods = kube_json("get", "pods", "-n", NAMESPACE)["items"]
    assert any(p["metadata"]["labels"].get("component") == "predictor" for p in pods), (
        "no model server runs: run after tests/kind/test_cluster.py deployed one"
    )
    relabel = kubectl(
        "label", "--dry-run=server", "--overwrite", "namespace", NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    assert "Warning" not in relabel.stderr, relabel.stderr
    for pod in pods:
        for init in pod["spec"].get("initContainers") or []:
            if init["name"] == "storage-initializer":
                context = init.get("securityContext") or {}
                # from the ClusterStorageContainer (manifests/base/storage-container.yaml)
                assert context.get("allowPrivilegeEscalation") is False, pod["metadata"]["name"]
                assert context.get("capabilities", {}).get("drop") == ["ALL"]
