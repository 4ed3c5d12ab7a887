"""The status the KServe controller (serverless mode) writes on an InferenceService, written here
through the real status subresource since no controller runs against the test API server.

Shape as in KServe v1beta1 (status.components.<component>.traffic is Knative's traffic split):
the latest ready revision carries `latestRevision: true` and the canary's share; the previously
rolled-out revision carries the rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubernetes import client

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def _condition(kind: str, ready: bool, reason: str = "") -> dict[str, Any]:
    condition = {
        "type": kind,
        "status": "True" if ready else "False",
        "lastTransitionTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if reason:
        condition["reason"] = reason
    return condition


def serverless_status(
    name: str,
    namespace: str,
    *,
    generation: int,
    latest_revision: str,
    previous_revision: str | None,
    latest_percent: int,
    ready: bool = True,
    reason: str = "",
) -> dict[str, Any]:
    """status for a predictor whose latest ready revision gets `latest_percent` of the traffic and
    whose previous rolled-out revision (if any) gets the rest."""
    url = f"http://{name}.{namespace}.example.com"
    traffic: list[dict[str, Any]] = [
        {"revisionName": latest_revision, "percent": latest_percent, "latestRevision": True}
    ]
    if previous_revision is not None and latest_percent < 100:
        traffic.append(
            {
                "revisionName": previous_revision,
                "percent": 100 - latest_percent,
                "latestRevision": False,
                "tag": "prev",
            }
        )
    predictor: dict[str, Any] = {
        "latestCreatedRevision": latest_revision,
        "latestReadyRevision": latest_revision if ready else previous_revision or "",
        "traffic": traffic,
        "url": url,
    }
    if latest_percent == 100:
        predictor["latestRolledoutRevision"] = latest_revision
        if previous_revision is not None:
            predictor["previousRolledoutRevision"] = previous_revision
    elif previous_revision is not None:
        predictor["latestRolledoutRevision"] = previous_revision
    return {
        "observedGeneration": generation,
        "url": url,
        "deploymentMode": "Serverless",
        "components": {"predictor": predictor},
        "conditions": [
            _condition("IngressReady", ready, reason),
            _condition("PredictorReady", ready, reason),
            _condition("Ready", ready, reason),
        ],
    }


def write_status(
    api_client: client.ApiClient, name: str, namespace: str, status: dict[str, Any]
) -> dict[str, Any]:
    """Replace the status through the status subresource, as the controller does."""
    api = client.CustomObjectsApi(api_client)
    current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    current["status"] = status
    return api.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, current
    )
