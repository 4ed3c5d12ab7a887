"""The feature store (Feast): apply the churn definitions, build point-in-time-correct training
sets, materialize to the online store, read online values.

Locally everything lives in one folder (`FeatureStoreConfig.repo_path`): `feature_store.yaml` (what
`feast serve` reads), the registry, the Parquet offline store (Feast's file store, computed with
Dask) and the SQLite online store. On a cluster the registry and the tables live in the object
store (an s3:// repository) and the online store is Redis. Feast is imported inside the functions: it is an extra
(`pip install mlops-platform[features]`), and nothing else of the project needs it.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from components.feature_definitions import (
    CHURN_VIEWS,
    FEATURE_SERVICE,
    PROJECT,
    feast_objects,
    feature_names,
)
from mlops_core.churn_data import CHURN_SCHEMA, DataGenerationError
from mlops_core.churn_feature_tables import (
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    ChurnTables,
    next_activity,
)
from mlops_core.churn_feature_tables import write_churn_tables as _write_tables
from mlops_core.data_fingerprint import fingerprint
from mlops_core.errors import InvalidInputError, NotFoundError
from mlops_core.settings import DEFAULT_FEATURE_REPO

if TYPE_CHECKING:
    from feast import FeatureStore


class FeatureStoreError(InvalidInputError):
    """The feature store cannot answer what was asked (labels without keys, no repository)."""


class FeatureRepoNotFoundError(NotFoundError):
    """The feature repository named does not exist or was never applied."""


REDIS_SCHEME = "redis://"


def _is_remote(uri: str) -> bool:
    return "://" in uri


def _absolute(uri: str) -> str:
    """Feast runs in `local_dir`, so a relative folder must be made absolute before it sees it."""
    return uri if _is_remote(uri) else str(Path(uri).resolve())


def uri_exists(uri: str) -> bool:
    """Whether a file exists, in a folder or in the object store."""
    if not _is_remote(uri):
        return Path(uri).exists()
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return bool(fs.exists(path))


@dataclass(frozen=True, kw_only=True)
class FeatureStoreConfig:
    """Where the feature store keeps its pieces; each path defaults to a place in `repo_path`.

    `repo_path` is a folder, or a prefix in the object store (``s3://bucket/features``: the
    registry and the Parquet tables there, read with the AWS_* variables as the model registry
    is). `online_store` is ``redis://host:port`` for a Redis server; empty, a SQLite file in the
    folder, which only a folder repository can hold."""

    repo_path: str = DEFAULT_FEATURE_REPO
    registry: str = ""  # default: <repo_path>/registry.db
    offline_dir: str = ""  # default: <repo_path>/data (the Parquet tables)
    online_path: str = ""  # default: <repo_path>/online.db (SQLite)
    online_store: str = ""  # redis://host:port; empty: SQLite at online_store_path
    project: str = PROJECT

    def __post_init__(self) -> None:
        if self.online_store and not self.online_store.startswith(REDIS_SCHEME):
            raise FeatureStoreError(
                f"the online store must be {REDIS_SCHEME}host:port (or empty for SQLite in the "
                f"repository folder), got {self.online_store!r}"
            )

    @property
    def remote(self) -> bool:
        return _is_remote(self.repo_path)

    def require_online_store(self) -> None:
        """Materialization and online reads need an online store that outlives this process:
        a SQLite file next to an object store repository would be a scratch file nobody reads."""
        if self.remote and not self.online_store:
            raise FeatureStoreError(
                f"the repository {self.repo_path} is in an object store, where SQLite cannot "
                f"live: name a Redis online store ({REDIS_SCHEME}host:port: the "
                "feature_online_store setting, MLOPS_FEATURE_ONLINE_STORE)"
            )

    def _in_repo(self, name: str) -> str:
        if self.remote:
            return f"{self.repo_path.rstrip('/')}/{name}"
        return str(Path(self.repo_path) / name)

    @property
    def registry_path(self) -> str:
        return self.registry or self._in_repo("registry.db")

    @property
    def offline_path(self) -> str:
        return self.offline_dir or self._in_repo("data")

    def table_uri(self, table: str) -> str:
        return f"{self.offline_path.rstrip('/')}/{table}.parquet"

    @property
    def online_store_path(self) -> str:
        return self.online_path or self._in_repo("online.db")

    @property
    def local_dir(self) -> Path:
        """The folder Feast runs in (its feature_store.yaml, what `feast serve` reads): the
        repository itself, or for one in an object store a folder named after it under the
        system's temporary folder."""
        if not self.remote:
            return Path(self.repo_path).resolve()
        digest = hashlib.sha256(self.repo_path.encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"mlops-feast-{digest}"

    def repo_yaml(self) -> dict[str, Any]:
        """feature_store.yaml's content: the file offline store, and Redis or SQLite online."""
        online: dict[str, Any]
        if self.online_store:
            online = {
                "type": "redis",
                "connection_string": self.online_store.removeprefix(REDIS_SCHEME),
            }
        else:
            online = {"type": "sqlite", "path": str(Path(self.online_store_path).resolve())}
        return {
            "project": self.project,
            "provider": "local",
            "registry": _absolute(self.registry_path),
            "offline_store": {"type": "file"},
            "online_store": online,
            "entity_key_serialization_version": 3,
        }

    def write_repo_yaml(self) -> Path:
        path = self.local_dir / "feature_store.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.repo_yaml(), sort_keys=False))
        return path


@dataclass(frozen=True)
class FeatureLineage:
    """What a training set was made from: the registry records it with the model version."""

    feature_service: str
    fingerprint: str  # of the training set (rows in timestamp, key order)
    rows: int
    dropped_rows: int  # label rows with no feature row in force at their time
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # definition_sha, max_age_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame
    lineage: FeatureLineage


@contextmanager
def local_dask() -> Iterator[None]:
    """Feast's file store computes with Dask: in this process's threads, never on a distributed
    client some other step left as the default."""
    import dask

    with dask.config.set(scheduler="threads"):
        yield


def open_store(config: FeatureStoreConfig) -> FeatureStore:
    from feast import FeatureStore, RepoConfig

    config.local_dir.mkdir(parents=True, exist_ok=True)
    repo = RepoConfig(repo_path=config.local_dir, **config.repo_yaml())
    return FeatureStore(config=repo)


def write_tables(config: FeatureStoreConfig, tables: ChurnTables) -> dict[str, str]:
    """Write the generator's tables where the feature views read them."""
    return _write_tables(tables, config.offline_path)


def add_activity_snapshot(config: FeatureStoreConfig, at: datetime, *, seed: int = 0) -> int:
    """Append one activity snapshot per customer at `at` to the repository's activity table (the
    generator's next month: mlops_core.churn_feature_tables.next_activity); the customers it
    covers. Materialization then loads it into the online store."""
    uri = config.table_uri("customer_activity")
    if not uri_exists(uri):
        raise FeatureRepoNotFoundError(f"no activity table at {uri}: run `mlops features init`")
    activity = pd.read_parquet(uri)
    try:
        grown = next_activity(activity, at, seed=seed)
    except DataGenerationError as e:
        raise FeatureStoreError(str(e)) from e
    grown.to_parquet(uri, index=False)
    return len(grown) - len(activity)


def apply_definitions(config: FeatureStoreConfig) -> FeatureStore:
    """Register the churn entity, views and service (and write feature_store.yaml for `feast
    serve`); the tables must already be in `config.offline_path`."""
    missing = [v.table for v in CHURN_VIEWS if not uri_exists(config.table_uri(v.table))]
    if missing:
        raise FeatureRepoNotFoundError(
            f"feature tables {missing} are not in {config.offline_path}; write them first "
            "(components.feature_store.write_tables)"
        )
    config.write_repo_yaml()
    store = open_store(config)
    store.apply(feast_objects(_absolute(config.offline_path)))
    return store


def applied_store(config: FeatureStoreConfig) -> FeatureStore:
    if not uri_exists(config.registry_path):
        raise FeatureRepoNotFoundError(
            f"no feature registry at {config.registry_path}: apply the definitions first "
            "(components.feature_store.apply_definitions)"
        )
    return open_store(config)


def training_set(config: FeatureStoreConfig, labels: pd.DataFrame) -> TrainingSet:
    """Historical features as of each label's event time (never later), with its lineage.

    `labels` holds the entity key, the event timestamp and the target. A label row with no
    feature row in force at its time is dropped (Feast's file store drops it); the count is in
    the lineage."""
    needed = [ENTITY_KEY, EVENT_TIMESTAMP, CHURN_SCHEMA.target]
    lacking = [c for c in needed if c not in labels.columns]
    if lacking:
        raise FeatureStoreError(
            f"labels lack column(s) {lacking}; expected {needed}, found {list(labels.columns)}"
        )
    store = applied_store(config)
    entity_df = labels.loc[:, needed].copy()
    entity_df[EVENT_TIMESTAMP] = pd.to_datetime(entity_df[EVENT_TIMESTAMP], utc=True)
    with local_dask():
        joined = store.get_historical_features(
            entity_df=entity_df, features=store.get_feature_service(FEATURE_SERVICE)
        ).to_df()
    frame = (
        joined.loc[:, [ENTITY_KEY, EVENT_TIMESTAMP, *feature_names(), CHURN_SCHEMA.target]]
        .sort_values([EVENT_TIMESTAMP, ENTITY_KEY], kind="stable")
        .reset_index(drop=True)
    )
    lineage = FeatureLineage(
        feature_service=FEATURE_SERVICE,
        fingerprint=fingerprint(frame),
        rows=len(frame),
        dropped_rows=len(entity_df) - len(frame),
        views={
            v.name: {"definition_sha": v.definition_sha(), "max_age_s": v.ttl.total_seconds()}
            for v in CHURN_VIEWS
        },
    )
    return TrainingSet(frame=frame, lineage=lineage)


def materialize(config: FeatureStoreConfig, start: datetime, end: datetime) -> list[str]:
    """Load each view's rows with event times in [start, end] into the online store (the latest
    per customer wins); returns the views materialized. One call per view, with the same window:
    Feast's incremental mode would start a view without TTL only one year back."""
    if end <= start:
        raise FeatureStoreError(f"materialize needs start before end, got {start} .. {end}")
    config.require_online_store()
    store = applied_store(config)
    done = []
    with local_dask():
        for view in CHURN_VIEWS:
            store.materialize(start_date=start, end_date=end, feature_views=[view.name])
            done.append(view.name)
    return done


def online_features(config: FeatureStoreConfig, customer_ids: Sequence[int]) -> pd.DataFrame:
    """The online store's values for `customer_ids` (one row each, in order), read in process;
    the model server reads the same values over HTTP from `feast serve`."""
    config.require_online_store()
    store = applied_store(config)
    response = store.get_online_features(
        features=store.get_feature_service(FEATURE_SERVICE),
        entity_rows=[{ENTITY_KEY: int(i)} for i in customer_ids],
    )
    return pd.DataFrame(response.to_dict()).loc[:, [ENTITY_KEY, *feature_names()]]
