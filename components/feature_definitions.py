"""The churn features, defined once: the entity, the feature views and the feature service.

Training (a point-in-time-correct training set), materialization and the model server's online
lookup all read these definitions. The plain description (`CHURN_VIEWS`: names, columns, TTLs)
imports nothing heavy, so the model server can read each view's TTL without Feast; `feast_objects`
builds Feast's objects from it (Feast is imported there, only where the feature store runs).

Feature names are the model's feature schema columns (`CHURN_SCHEMA`), so a training set or an
online row is a model input as it stands.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.churn_feature_tables import (
    ACTIVITY_FEATURES,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    PROFILE_FEATURES,
)

PROJECT = "churn"
ENTITY_NAME = "customer"
FEATURE_SERVICE = "churn"


@dataclass(frozen=True)
class FeatureViewSpec:
    """One feature view: its name, the table it reads, its features and its TTL (0: no limit)."""

    name: str
    table: str
    features: tuple[str, ...]
    ttl: timedelta

    def definition_sha(self) -> str:
        """A digest of what the view computes (not where its files are): lineage names the
        definition a training set was made from."""
        doc = {
            "name": self.name,
            "entity": [ENTITY_NAME, ENTITY_KEY],
            "timestamp": EVENT_TIMESTAMP,
            "table": self.table,
            "features": [[f, _feast_type_name(f)] for f in self.features],
            "ttl_s": self.ttl.total_seconds(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


CHURN_VIEWS: tuple[FeatureViewSpec, ...] = (
    # Attributes that rarely change: the latest row applies however old it is.
    FeatureViewSpec("customer_profile", "customer_profile", PROFILE_FEATURES, timedelta(0)),
    # Usage and billing snapshots: a snapshot older than 45 days is no value at all.
    FeatureViewSpec(
        "customer_activity", "customer_activity", ACTIVITY_FEATURES, timedelta(days=45)
    ),
)


def view_for_feature(name: str) -> FeatureViewSpec:
    for view in CHURN_VIEWS:
        if name in view.features:
            return view
    raise KeyError(f"no feature view holds {name!r}")


def _feast_type_name(feature: str) -> str:
    # Numeric features are doubles (an int feature may be missing: NaN), categorical are strings.
    return "Float64" if CHURN_SCHEMA.feature(feature).is_numeric else "String"


def feast_objects(offline_dir: str) -> list[Any]:
    """Feast's entity, file sources, feature views and feature service for the tables in
    `offline_dir`, an absolute folder or an object store prefix (written by
    `mlops_core.churn_feature_tables.write_churn_tables`)."""
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, String

    types = {"Float64": Float64, "String": String}
    customer = Entity(
        name=ENTITY_NAME,
        join_keys=[ENTITY_KEY],
        value_type=ValueType.INT64,
        description="a subscriber",
    )
    views: list[Any] = []
    for spec in CHURN_VIEWS:
        source = FileSource(
            name=spec.table,
            # No endpoint in the source: s3fs and pyarrow read AWS_ENDPOINT_URL where they run.
            path=f"{offline_dir.rstrip('/')}/{spec.table}.parquet",
            timestamp_field=EVENT_TIMESTAMP,
        )
        views.append(
            FeatureView(
                name=spec.name,
                entities=[customer],
                ttl=spec.ttl,
                schema=[Field(name=f, dtype=types[_feast_type_name(f)]) for f in spec.features],
                source=source,
                online=True,
                tags={"definition_sha": spec.definition_sha()},
            )
        )
    service = FeatureService(name=FEATURE_SERVICE, features=views)
    return [customer, *views, service]


def feature_names() -> list[str]:
    """The service's features in the model's schema order."""
    names = [f for view in CHURN_VIEWS for f in view.features]
    return [f for f in CHURN_SCHEMA.feature_names if f in names]
