"""The one builder of the KServe InferenceService body that serves a registered model version.

Used by the pipeline's deploy step (components/deploy.py) and checked
against manifests/model/inference-service.yaml. The body asks for KServe's Standard mode
(`DEPLOYMENT_MODE`: Deployments, canaries as weighted Gateway API routes); the traffic writer
(components/isvc_traffic.py) also handles objects in Serverless (Knative) mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from components.isvc_metadata import MODEL_VERSION as MODEL_VERSION_ANNOTATION
from mlops_core.errors import MlopsError

API_VERSION = "serving.kserve.io/v1beta1"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
# KServe only injects the storage initializer into a container with this name.
PREDICTOR_CONTAINER = "kserve-container"
MODEL_DIR = "/mnt/models"
# KServe's deployment-mode annotation (constants.DeploymentMode) and the mode the builder asks
# for. The traffic writer (components/isvc_traffic.py) follows this annotation on the object, so
# this constant is the one place that moves the platform between Serverless and Standard canaries.
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
# Standard (Deployments, Gateway API canaries): what `make deploy` installs KServe for. Knative
# mode needs Envoy-based networking, which no registry here serves (README, Cluster).
DEPLOYMENT_MODE = "Standard"
SERVING_PORT = 8080
SERVE_ARGS = ("serve", "--model-dir", MODEL_DIR)
SERVING_TOKEN_SECRET = "mlops-serving-token"  # manifests/base/serving-token-secret.yaml
# The serving image's user (docker/serving.Dockerfile); Kubernetes checks runAsNonRoot by uid.
SERVING_UID = 10001
# The ClusterStorageContainer (manifests/base/storage-container.yaml) whose securityContext KServe
# merges into the storage initializer, so the model pods meet Pod Security `restricted`.
STORAGE_CONTAINER = "mlops-restricted-storage-initializer"
# Seconds a stopping model pod keeps serving: the gateway drops its endpoint within them.
PRE_STOP_DRAIN_S = 5


class InferenceServiceError(MlopsError):
    """An InferenceService cannot be built from the given values."""


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Sized for a laptop kind cluster; override for production."""

    cpu_request: str = "100m"
    memory_request: str = "256Mi"
    cpu_limit: str = "1"
    memory_limit: str = "1Gi"

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True, kw_only=True)
class InferenceServiceSpec:
    """What varies between deployments of the model; everything else is fixed by the builder."""

    name: str
    namespace: str
    image: str
    storage_uri: str
    model_name: str
    model_version: str
    canary_traffic_percent: int | None = None
    service_account: str = "mlops-model-server"
    min_replicas: int = 1
    max_replicas: int = 2
    resources: Resources = field(default_factory=Resources)
    # Feast's feature server for requests sent by entity key (serving/feature_lookup.py); empty:
    # no lookup, every request carries every feature.
    feature_server_url: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "namespace", "image", "storage_uri", "model_name", "model_version"):
            if not getattr(self, name):
                raise InferenceServiceError(f"InferenceService field {name!r} must not be empty")
        if "://" not in self.storage_uri:
            raise InferenceServiceError(
                f"storage_uri must be a URI KServe can fetch (s3://, gs://, pvc://...), "
                f"got {self.storage_uri!r}"
            )
        pct = self.canary_traffic_percent
        if pct is not None and not 0 <= pct <= 100:
            raise InferenceServiceError(f"canary_traffic_percent must be 0..100, got {pct}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise InferenceServiceError(
                f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}"
            )


def build_inference_service(spec: InferenceServiceSpec) -> dict[str, Any]:
    """The InferenceService body (a plain dict, as the Kubernetes API takes it)."""
    lookup = (
        [{"name": "MLOPS_FEATURE_SERVER_URL", "value": spec.feature_server_url}]
        if spec.feature_server_url
        else []
    )
    predictor: dict[str, Any] = {
        "serviceAccountName": spec.service_account,
        "storageContainerName": STORAGE_CONTAINER,
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "containers": [
            {
                "name": PREDICTOR_CONTAINER,
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                # All interfaces inside the pod; the NetworkPolicy admits only gateway + Prometheus.
                "args": [*SERVE_ARGS, "--model", spec.model_name, "--host", "0.0.0.0"],
                "env": [
                    # KServe downloads this URI into /mnt/models before the server starts.
                    {"name": "STORAGE_URI", "value": spec.storage_uri},
                    {"name": "MLOPS_MODEL_NAME", "value": spec.model_name},
                    # Bearer token of the write endpoints (feedback); hack/deploy.sh fills it.
                    {
                        "name": "MLOPS_API_TOKEN",
                        "valueFrom": {
                            "secretKeyRef": {"name": SERVING_TOKEN_SECRET, "key": "token"}
                        },
                    },
                    *lookup,
                ],
                "ports": [{"containerPort": SERVING_PORT, "protocol": "TCP"}],
                "readinessProbe": {
                    "httpGet": {"path": f"/v1/models/{spec.model_name}", "port": SERVING_PORT},
                    "periodSeconds": 5,
                },
                # A stopping pod (rollback, promotion) keeps serving while the gateway learns
                # that its endpoint is gone; without it, requests in that gap got a 502.
                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_DRAIN_S}}},
                "resources": spec.resources.to_dict(),
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": SERVING_UID,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ],
    }
    if spec.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = spec.canary_traffic_percent
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "mlops-platform",
                "app.kubernetes.io/name": spec.model_name,
            },
            "annotations": {
                DEPLOYMENT_MODE_ANNOTATION: DEPLOYMENT_MODE,
                # Marks the pods for scraping; the PodMonitor in manifests/base/monitoring is
                # what makes Prometheus actually scrape them.
                "serving.kserve.io/enable-prometheus-scraping": "true",
                MODEL_VERSION_ANNOTATION: spec.model_version,
            },
        },
        "spec": {"predictor": predictor},
    }


def storage_uri_of(body: dict[str, Any]) -> str | None:
    """The model URI an InferenceService body (built here, or read back from the API) serves."""
    for container in body.get("spec", {}).get("predictor", {}).get("containers", []):
        if container.get("name") == PREDICTOR_CONTAINER:
            for env in container.get("env", []):
                if env.get("name") == "STORAGE_URI":
                    return env.get("value")
    return None
