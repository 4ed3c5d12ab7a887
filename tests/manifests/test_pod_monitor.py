"""The PodMonitor's `pod` label, which the canary analysis reads to tell an image-only rollout's
stable from its canary (components.isvc_traffic.role_pods): the meta label it is relabelled from
is read in the Prometheus source the cluster's server is built from (PROMETHEUS_GO_MODULE)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.upstream import go_module_dir, pins

ROOT = Path(__file__).resolve().parents[2]


def test_the_pod_monitor_keeps_the_pod_name_as_the_pod_label() -> None:
    monitor = yaml.safe_load((ROOT / "manifests/base/monitoring/pod-monitor.yaml").read_text())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod"} in endpoint[
        "relabelings"
    ]
    sd = go_module_dir("github.com/prometheus/prometheus", pins()["PROMETHEUS_GO_MODULE"])
    kubernetes = (sd / "discovery/kubernetes/kubernetes.go").read_text()
    pod = (sd / "discovery/kubernetes/pod.go").read_text()
    # __meta_ + kubernetes_ + pod + _name, set from the pod's own name.
    assert 'metaLabelPrefix = model.MetaLabelPrefix + "kubernetes_"' in kubernetes
    assert 'RolePod           Role = "pod"' in kubernetes
    assert (
        'labelSet[model.LabelName(metaLabelPrefix+string(role)+"_name")] = lv(objectMeta.Name)'
        in (kubernetes)
    )
    assert "addObjectMetaLabels(ls, pod.ObjectMeta, RolePod)" in pod
