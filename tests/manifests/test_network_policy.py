"""The `mlops` namespace's NetworkPolicies (manifests/base/network-policy.yaml), evaluated over the
rendered manifests with Kubernetes' NetworkPolicy semantics: default deny both ways, then only the
gateway and Prometheus into the model servers, the gateway into the dashboard, DNS out of every pod,
the model store out of the model servers (the storage initializer), and the API server, Prometheus
and KFP out of the controller. The peers' labels are read where their owners set them.

(The kind node this project builds uses a bridge CNI that does not enforce NetworkPolicy, so the
policies are checked here, by evaluation, rather than by traffic on kind.)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.manifests.test_manifests import ROOT, by_kind, render
from tests.upstream import go_module_dir, kfp_file, pins

NAMESPACE = "mlops"


@dataclass(frozen=True)
class Peer:
    namespace: str | None  # None: outside the cluster's pods (the API server's address, the web)
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.244.0.10"

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


def _peer_matches(peer: dict[str, Any], other: Peer, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_ok = _selects(peer["namespaceSelector"], other.namespace_labels)
    else:
        ns_ok = other.namespace == policy_ns
    return ns_ok and _selects(peer.get("podSelector") or {}, other.labels)


def _port_ok(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
    )


def _direction_allows(
    policies: list[dict[str, Any]], pod: Peer, other: Peer, port: int, protocol: str, kind: str
) -> bool:
    """Whether `pod`'s policies of `kind` (Ingress/Egress) admit `other` on port/protocol."""
    if pod.namespace is None:
        return True
    relevant = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and _selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not relevant:
        return True
    key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    return any(
        _port_ok(rule, port, protocol)
        and (peers not in rule or any(_peer_matches(x, other, pod.namespace) for x in rule[peers]))
        for p in relevant
        for rule in p["spec"].get(key) or []
    )


def connects(
    policies: list[dict[str, Any]], src: Peer, dst: Peer, port: int, protocol: str = "TCP"
) -> bool:
    return _direction_allows(policies, src, dst, port, protocol, "Egress") and _direction_allows(
        policies, dst, src, port, protocol, "Ingress"
    )


# --- the peers, with the labels their owners give them -------------------------------------------


def _traefik() -> Peer:
    docs = yaml.safe_load_all((ROOT / "manifests/gateway/traefik.yaml").read_text())
    (deploy,) = [d for d in docs if d and d["kind"] == "Deployment"]
    return Peer(deploy["metadata"]["namespace"], deploy["spec"]["template"]["metadata"]["labels"])


def _prometheus() -> Peer:
    """prometheus-operator's pod labels (makeSelectorLabels, PROMETHEUS_OPERATOR_VERSION)."""
    op = go_module_dir(
        "github.com/prometheus-operator/prometheus-operator", pins()["PROMETHEUS_OPERATOR_VERSION"]
    )
    server = (op / "pkg/prometheus/server/operator.go").read_text()
    assert re.search(r'applicationNameLabelValue\s+= "prometheus"', server)
    assert "operator.ApplicationNameLabelKey:     applicationNameLabelValue," in server
    assert (
        'ApplicationNameLabelKey = "app.kubernetes.io/name"'
        in (op / "pkg/operator/kubernetes.go").read_text()
    )
    return Peer("monitoring", {"app.kubernetes.io/name": "prometheus", "prometheus": "mlops"})


def _coredns() -> Peer:
    """kubeadm's CoreDNS Deployment (KUBERNETES_VERSION), in kube-system."""
    k8s = go_module_dir("k8s.io/kubernetes", pins()["KUBERNETES_VERSION"])
    manifests = (k8s / "cmd/kubeadm/app/phases/addons/dns/manifests.go").read_text()
    deployment = manifests[manifests.index("CoreDNSDeployment = `") :]
    assert "namespace: kube-system" in deployment and "k8s-app: kube-dns" in deployment
    return Peer("kube-system", {"k8s-app": "kube-dns"})


def _pipeline_step() -> Peer:
    """A KFP v2 run's pod: the argo compiler (KFP_VERSION) labels every pod of the workflow."""
    argo = kfp_file("backend/src/v2/compiler/argocompiler/argo.go")
    labels = argo[argo.index("PodMetadata: &wfapi.Metadata{") :]
    labels = labels[labels.index("Labels: map[string]string{") :]
    (key, value) = re.findall(r'"([^"]+)": "([^"]+)"', labels[: labels.index("}")])[0]
    return Peer("kubeflow", {key: value})


def _kfp_pod(path: str) -> Peer:
    deploy = yaml.safe_load(kfp_file(path))
    return Peer("kubeflow", deploy["spec"]["template"]["metadata"]["labels"])


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    objs = render("dev")
    policies = [
        p for p in by_kind(objs, "NetworkPolicy") if p["metadata"]["namespace"] == NAMESPACE
    ]
    (pod_monitor,) = by_kind(objs, "PodMonitor")
    model_labels = {"serving.kserve.io/inferenceservice": "churn", "component": "predictor"}
    assert _selects(pod_monitor["spec"]["selector"], model_labels)

    def pod_of(name: str) -> Peer:
        (deploy,) = [o for o in by_kind(objs, "Deployment") if o["metadata"]["name"] == name]
        return Peer(NAMESPACE, deploy["spec"]["template"]["metadata"]["labels"])

    return {
        "policies": policies,
        "model": Peer(NAMESPACE, model_labels),
        "controller": pod_of("mlops-canary-controller"),
        "dashboard": pod_of("mlops-dashboard"),
        "feature server": pod_of("mlops-feature-server"),
        "online store": pod_of("mlops-online-store"),
        "other in mlops": Peer(NAMESPACE, {"app": "something-else"}),
        "traefik": _traefik(),
        "prometheus": _prometheus(),
        "dns": _coredns(),
        "seaweedfs": _kfp_pod(
            "manifests/kustomize/third-party/seaweedfs/base/seaweedfs/seaweedfs-deployment.yaml"
        ),
        "pipeline step": _pipeline_step(),
        "kfp api": _kfp_pod(
            "manifests/kustomize/base/pipeline/ml-pipeline-apiserver-deployment.yaml"
        ),
        "default ns": Peer("default", {"app": "curious"}),
        "api server": Peer(None, ip="172.18.0.2"),
        "internet": Peer(None, ip="93.184.215.14"),
    }


ALLOWED = [
    ("traefik", "model", 8080),
    ("prometheus", "model", 8080),
    ("traefik", "dashboard", 8095),
    ("model", "seaweedfs", 8333),
    ("controller", "api server", 6443),
    ("controller", "api server", 443),
    ("controller", "prometheus", 9090),
    ("controller", "kfp api", 8888),
    ("dashboard", "api server", 6443),
    ("dashboard", "prometheus", 9090),
    ("dashboard", "seaweedfs", 8333),
    ("model", "feature server", 6566),
    ("feature server", "seaweedfs", 8333),
    ("feature server", "online store", 6379),
    ("pipeline step", "online store", 6379),  # the materialization pipeline writes it
]
DENIED = [
    ("other in mlops", "model", 8080),
    ("default ns", "model", 8080),
    ("kfp api", "model", 8080),
    ("controller", "model", 8080),
    ("dashboard", "model", 8080),
    ("traefik", "model", 9090),
    ("prometheus", "controller", 8080),
    ("traefik", "controller", 8080),
    ("prometheus", "dashboard", 8095),
    ("default ns", "dashboard", 8095),
    ("model", "api server", 6443),
    ("model", "prometheus", 9090),
    ("model", "kfp api", 8888),
    ("model", "internet", 80),
    ("model", "seaweedfs", 9333),
    ("controller", "seaweedfs", 8333),
    ("controller", "internet", 80),
    ("other in mlops", "api server", 6443),
    ("other in mlops", "internet", 443 + 1),
    ("traefik", "feature server", 6566),
    ("other in mlops", "feature server", 6566),
    ("model", "online store", 6379),
    ("dashboard", "online store", 6379),
    ("other in mlops", "online store", 6379),
    ("kfp api", "online store", 6379),
    ("pipeline step", "feature server", 6566),
    ("feature server", "internet", 443),
    ("online store", "internet", 443),
    ("online store", "seaweedfs", 8333),
]


@pytest.mark.parametrize(("src", "dst", "port"), ALLOWED)
def test_what_is_needed_is_admitted(world, src: str, dst: str, port: int) -> None:
    assert connects(world["policies"], world[src], world[dst], port)


@pytest.mark.parametrize(("src", "dst", "port"), DENIED)
def test_everything_else_is_refused(world, src: str, dst: str, port: int) -> None:
    assert not connects(world["policies"], world[src], world[dst], port)


@pytest.mark.parametrize("pod", ["model", "controller", "dashboard", "other in mlops"])
def test_every_pod_resolves_names(world, pod: str) -> None:
    for protocol in ("UDP", "TCP"):
        assert connects(world["policies"], world[pod], world["dns"], 53, protocol)
    assert not connects(world["policies"], world[pod], world["default ns"], 53, "UDP")


def test_the_namespace_denies_by_default(world) -> None:
    (deny,) = [p for p in world["policies"] if p["metadata"]["name"] == "mlops-default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Without the other policies, nothing moves (the evaluator is not trivially permissive).
    assert not connects([deny], world["traefik"], world["model"], 8080)
    assert connects([], world["traefik"], world["model"], 8080)
