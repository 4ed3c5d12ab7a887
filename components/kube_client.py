"""The one way the project gets Kubernetes credentials.

Order: an explicit kubeconfig context names a kubeconfig; otherwise in a pod (the API server's
service environment variables are set) the pod's ServiceAccount; otherwise the current kubeconfig
context (KUBECONFIG or ~/.kube/config). Each call returns its own `ApiClient` and leaves the
`kubernetes` package's global default configuration alone, so two clients (a test's admin and a
ServiceAccount) can live in one process.
"""

from __future__ import annotations

import os

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from mlops_core.errors import MlopsError


class KubernetesCredentialsError(MlopsError):
    """No usable Kubernetes credentials were found."""


def in_a_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def load_api_client(context: str | None = None) -> client.ApiClient:
    """An API client from the pod's ServiceAccount or the kubeconfig (see the module doc)."""
    if context is None and in_a_pod():
        cfg = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=cfg)
        except ConfigException as e:
            raise KubernetesCredentialsError(
                f"running in a pod, but its ServiceAccount token cannot be read ({e}); "
                "check automountServiceAccountToken on the pod"
            ) from e
        return client.ApiClient(cfg)
    try:
        return config.new_client_from_config(context=context)
    except (ConfigException, FileNotFoundError) as e:
        raise KubernetesCredentialsError(
            "no Kubernetes credentials: not in a pod, and no usable kubeconfig "
            f"(KUBECONFIG or ~/.kube/config{f', context {context!r}' if context else ''}): {e}; "
            "create a cluster with `make cluster` or set KUBECONFIG"
        ) from e
