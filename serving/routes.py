"""Extra HTTP routes served next to KServe's V1/V2 routes: the one place to add them.

Another part of the platform (e.g. the label-feedback store's POST /v1/models/<name>/feedback)
adds its `APIRouter` to the list returned here; `serving.server.attach` includes every
router before the server starts. Handlers get the live predictor through the closure, so they can
read its bundle (schema, version) and validator.
"""

from __future__ import annotations

from fastapi import APIRouter

from serving.monitoring.endpoints import monitoring_routers
from serving.predictor import ChurnPredictor


def extra_routers(predictor: ChurnPredictor) -> list[APIRouter]:
    """Routers to serve alongside the predictor: label feedback, live quality, drift."""
    return [*monitoring_routers(predictor)]
