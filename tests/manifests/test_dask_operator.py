"""The dask-kubernetes operator as `make deploy` runs it (manifests/base/dask-operator): the module
kopf runs, the CRDs hack/deploy.sh applies and the rights the operator gets are read from the
operator's own package at the version pyproject.toml pins, and its image installs that package."""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests.test_manifests import by_kind, render
from tests.upstream import ROOT

OPERATOR = "dask-kubernetes"
CHART = "operator/deployment/helm/dask-kubernetes-operator"


def _package_dir() -> Path:
    pinned = re.search(rf'"{OPERATOR}==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned, f"pyproject.toml pins no {OPERATOR}"
    try:
        installed = metadata.version(OPERATOR)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{OPERATOR} is not installed (the dev extra): its package cannot be read")
    assert installed == pinned.group(1), f"installed {installed}, pyproject pins {pinned.group(1)}"
    import dask_kubernetes

    return Path(dask_kubernetes.__file__).parent


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [o for o in render("dev") if o["metadata"]["name"].startswith("mlops-dask-operator")]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_kopf_runs_the_operators_handlers_module(objects: list[dict[str, Any]]) -> None:
    _package_dir()
    command = _container(objects)["command"]
    assert command[:2] == ["kopf", "run"]
    module = command[command.index("--module") + 1]
    handlers = importlib.import_module(module)
    # the package registers the DaskCluster handlers (kopf.on.create), not some other kopf app
    source = "".join(p.read_text() for p in Path(str(handlers.__file__)).parent.glob("*.py"))
    assert '@kopf.on.create("daskcluster.kubernetes.dask.org")' in source


def test_the_operator_watches_only_the_namespace_where_steps_make_clusters(
    objects: list[dict[str, Any]],
) -> None:
    from components.dask_kubecluster import GROUP

    args = _container(objects)["args"]
    assert args[args.index("--namespace") + 1] == "kubeflow"
    assert "--all-namespaces" not in args and "-A" not in args
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == "kubeflow"
    dask_rules = [r for r in role["rules"] if r["apiGroups"] == [GROUP]]
    assert dask_rules, role


def test_its_rights_cover_what_the_pinned_operator_does(objects: list[dict[str, Any]]) -> None:
    """Every resource the upstream chart's Role lets the operator touch, in our Role with the
    verbs its handlers use (the chart grants "*" on pods, Services and Deployments; kopf's
    admission webhooks and peering are off here, so those rules are left out)."""
    text = (_package_dir() / CHART / "templates" / "role.yaml").read_text()
    # a Helm template: drop its {{- if }} lines, name placeholders stay strings
    text = re.sub(r"^\{\{.*\}\}$", "", text, flags=re.M)
    upstream = yaml.safe_load(re.sub(r"\{\{[^}]*\}\}", "x", text))
    ours: dict[tuple[str, str], set[str]] = {}
    (role,) = by_kind(objects, "Role")
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                ours[(group, resource)] = set(rule["verbs"])
    skipped = {"kopf.dev", "apiextensions.k8s.io", "admissionregistration.k8s.io/v1"}
    for rule in upstream["rules"]:
        for group in rule["apiGroups"]:
            if group in skipped or group.startswith("admissionregistration"):
                continue
            for resource in rule["resources"]:
                if resource in {"namespaces", "pods/status", "services/status"}:
                    continue  # namespaces: the ClusterRole; status is read with the object
                if resource == "deployments/status":
                    continue
                assert (group, resource) in ours, f"the operator cannot touch {group}/{resource}"
                wanted = {"get", "list", "watch", "create", "patch", "delete"}
                if "*" not in rule["verbs"]:
                    wanted = set(rule["verbs"])
                if resource in {"pods", "events"}:
                    wanted &= ours[(group, resource)]  # it creates and reads these, no more
                assert wanted <= ours[(group, resource)], (group, resource, wanted)
    (cluster_role,) = by_kind(objects, "ClusterRole")
    # cluster-wide, it reads the names of CRDs and namespaces (kopf's discovery), nothing more
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]


def test_deploy_applies_the_crds_of_the_pinned_package() -> None:
    deploy = (ROOT / "hack" / "deploy.sh").read_text()
    match = re.search(r'/ "(operator/deployment/helm/[^"]+)"', deploy)
    assert match, "hack/deploy.sh does not name the operator's CRD folder"
    crds = _package_dir() / match.group(1)
    kinds = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in crds.glob("*.yaml")}
    assert {"DaskCluster", "DaskWorkerGroup"} <= kinds, kinds
    for name in re.findall(r"crd/(\S+)", deploy.split("apply_dask_crds()", 1)[1][:900]):
        plural, group = name.split(".", 1)
        assert group == "kubernetes.dask.org" and plural in {"daskclusters", "daskworkergroups"}


def test_the_component_image_installs_the_operator() -> None:
    wheelhouse = (ROOT / "hack" / "wheelhouse.sh").read_text()
    assert 'extras["dask-operator"]' in wheelhouse
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r"^dask-operator = \[([^\]]*)\]", pyproject, flags=re.M)
    assert extra and f'"{OPERATOR}==' in extra.group(1)
