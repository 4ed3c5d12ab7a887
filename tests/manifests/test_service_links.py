"""Kubernetes puts variables for every Service of a namespace into each pod there (service links:
`<NAME>_SERVICE_HOST`, `<NAME>_PORT`, `<NAME>_PORT_<port>_<PROTO>`, ...). A Service named
`mlops-x` makes `MLOPS_X_PORT=tcp://...`, the very name `mlops_core.settings` reads for a setting
`x_port`: the dashboard's Service once crashed the controller and every model server that way
(`int('tcp://10.96.201.251:80')`). No setting's variable may be one a Service of ours makes."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlops_core.settings import Settings
from tests.manifests.test_manifests import by_kind, rendered  # noqa: F401  (the fixture)


def service_link_names(service: dict[str, Any]) -> set[str]:
    """The variables kubelet makes for a Service (pkg/kubelet/envvars: makeEnvVariableName)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in service["spec"].get("ports", []):
        proto = port.get("protocol", "TCP").upper()
        base = f"{prefix}_PORT_{port['port']}_{proto}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
        if port.get("name"):
            names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def test_no_setting_is_read_from_a_variable_a_service_of_ours_makes(rendered) -> None:  # noqa: F811
    _, objs = rendered
    made = set().union(*(service_link_names(s) for s in by_kind(objs, "Service")))
    assert "MLOPS_DASHBOARD_PORT" in made  # the check sees the Service that bit
    read = {f"MLOPS_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    assert not read & made, sorted(read & made)


def test_the_check_finds_the_collision_that_crashed_the_pods() -> None:
    service = {"metadata": {"name": "mlops-dashboard"}, "spec": {"ports": [{"port": 80}]}}
    assert "MLOPS_DASHBOARD_PORT" in service_link_names(service)
