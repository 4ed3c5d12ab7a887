"""The materialization step: load each feature view's new rows into the online store.

Incremental, view by view: a view starts where its last materialization ended (Feast keeps each
view's materialized intervals in the registry: `FeatureView.materialization_intervals`, whose
latest end is `most_recent_end_time`) or, the first time, at the earliest event time in its
source; it ends at `end` (default: now). Feast's own `materialize_incremental` starts a view it
never materialized at `now - ttl`, or one year back for a view without TTL (the profile view),
which would leave older customers out of the online store: hence the start chosen here.

Feast's file store reads a window's rows with both ends included, so a row exactly at a previous
end is read again (the same value written again). The summary counts the source rows in each
window where the source is a file this process can read (Feast's file source), else `None`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.feature_definitions import CHURN_VIEWS
from components.feature_store import (
    FeatureStoreConfig,
    FeatureStoreError,
    applied_store,
    local_dask,
    uri_exists,
)
from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP
from mlops_core.settings import load_settings

if TYPE_CHECKING:
    from feast import FeatureView


@dataclass(frozen=True)
class ViewMaterialization:
    """One view's window: materialized, or skipped (nothing new: it already reaches `end`)."""

    view: str
    start: str  # ISO 8601, UTC
    end: str
    first_time: bool  # the start is the source's earliest event (never materialized before)
    materialized: bool
    rows: int | None  # source rows with event times in [start, end]; None: not countable
    customers: int | None  # distinct entity keys among them (online rows written)


@dataclass(frozen=True)
class MaterializationSummary:
    repo_path: str
    end: str
    views: list[ViewMaterialization]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_end(end: str) -> datetime:
    """`end` as a UTC time: empty means now; a time without a zone is read as UTC."""
    if not end:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(end)
    except ValueError as e:
        raise FeatureStoreError(
            f"end must be an ISO 8601 time such as 2026-05-01T00:00:00+00:00, got {end!r}"
        ) from e
    return _utc(moment)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _source_events(view: FeatureView) -> pd.DataFrame | None:
    """The view's source keys and event times, where the source is a Parquet file (in a folder or
    the object store)."""
    path = getattr(view.batch_source, "path", None)
    if not path or not uri_exists(str(path)):
        return None
    frame = pd.read_parquet(path, columns=[ENTITY_KEY, EVENT_TIMESTAMP])
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    return frame


def _window(view: FeatureView, end: datetime) -> tuple[datetime, bool, pd.DataFrame | None]:
    """Where the view's next window starts (`end` for an empty source: nothing to do), whether
    this is its first materialization, and its source's events (None when they cannot be read)."""
    events = _source_events(view)
    last_end = view.most_recent_end_time
    if last_end is not None:
        return _utc(last_end), False, events
    if events is None:
        raise FeatureStoreError(
            f"feature view {view.name} was never materialized and its source "
            f"{getattr(view.batch_source, 'path', '')!r} is not a Parquet file to find its "
            "earliest event in"
        )
    if events.empty:
        return end, True, events
    earliest: datetime = events[EVENT_TIMESTAMP].min().to_pydatetime()
    return earliest, True, events


def _counts(
    events: pd.DataFrame | None, start: datetime, end: datetime
) -> tuple[int | None, int | None]:
    """Source rows with event times in [start, end] (as Feast's file store reads them), and
    their distinct entity keys; None, None where the source cannot be read here."""
    if events is None:
        return None, None
    inside = events[events[EVENT_TIMESTAMP].between(start, end)] if start < end else events[:0]
    return len(inside), int(inside[ENTITY_KEY].nunique())


def materialize_features(config: FeatureStoreConfig, end: datetime | None = None) -> dict[str, Any]:
    """Materialize every churn view from where it last ended (or its earliest event) to `end`
    (default now); returns the summary as a dict (`MaterializationSummary`). A view already at or
    past `end` is skipped."""
    end = _utc(end) if end is not None else datetime.now(UTC)
    config.require_online_store()
    store = applied_store(config)
    done: list[ViewMaterialization] = []
    with local_dask():
        for spec in CHURN_VIEWS:
            start, first_time, events = _window(store.get_feature_view(spec.name), end)
            rows, customers = _counts(events, start, end)
            if start < end:
                store.materialize(start_date=start, end_date=end, feature_views=[spec.name])
            done.append(
                ViewMaterialization(
                    view=spec.name,
                    start=start.isoformat(),
                    end=end.isoformat(),
                    first_time=first_time,
                    materialized=start < end,
                    rows=rows,
                    customers=customers,
                )
            )
    return MaterializationSummary(
        repo_path=config.repo_path if config.remote else str(Path(config.repo_path).resolve()),
        end=end.isoformat(),
        views=done,
    ).to_dict()


def materialize_features_step(*, feature_repo: str, end: str, summary_path: str) -> dict[str, Any]:
    """The pipeline step: `end` as ISO 8601 text (empty: now); the summary also to `summary_path`."""
    config = FeatureStoreConfig(
        repo_path=feature_repo, online_store=load_settings().feature_online_store
    )
    summary = materialize_features(config, parse_end(end))
    Path(summary_path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary_path).write_text(json.dumps(summary, indent=2))
    return summary
