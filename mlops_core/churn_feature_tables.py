"""The churn data split the way a feature store holds it: an entity table and feature tables.

`generate_churn` makes one flat row per customer. Here the same customers (same scenario, same
seed, same values) are spread over the tables a team keeps in practice:

- ``labels``: the entity table: ``customer_id``, ``event_timestamp`` (when the label was observed)
  and the label ``churned``;
- ``customer_profile``: attributes that rarely change (age, contract, payment method, internet
  service, region): one row per customer, written before any label;
- ``customer_activity``: usage and billing, one snapshot per customer every `snapshot_days` days;
  the last snapshot holds the flat table's values, earlier ones the customer's history (shorter
  tenure, smaller lifetime charges, other usage);
- ``flat``: the flat table with ``customer_id`` and ``event_timestamp`` added.

Each label is observed less than `snapshot_days` days after the customer's last snapshot, so a
point-in-time join of ``labels`` with the two feature tables gives back ``flat`` exactly: the
known truth the feature store's training path is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_core.churn_data import CHURN_SCHEMA, DataGenerationError, generate_churn

ENTITY_KEY = "customer_id"
EVENT_TIMESTAMP = "event_timestamp"
PROFILE_FEATURES = ("age", "contract", "payment_method", "internet_service", "region")
ACTIVITY_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_tickets_90d",
    "logins_30d",
    "avg_session_minutes",
)
TABLES = ("labels", "customer_profile", "customer_activity", "flat")
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)  # the first activity snapshot's day
FIRST_CUSTOMER_ID = 100_000
SNAPSHOTS = 3  # activity snapshots per customer
SNAPSHOT_DAYS = 30  # days between a customer's snapshots
# `recent_start`: how long before now each customer's latest snapshot falls (plus its hour).
RECENT_SNAPSHOT_AGE = timedelta(days=10)


@dataclass(frozen=True)
class ChurnTables:
    labels: pd.DataFrame
    customer_profile: pd.DataFrame
    customer_activity: pd.DataFrame
    flat: pd.DataFrame

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    @property
    def last_event(self) -> datetime:
        """The latest timestamp in any table (labels come last)."""
        latest = pd.Timestamp(self.labels[EVENT_TIMESTAMP].max())
        moment: datetime = latest.to_pydatetime()
        return moment


def generate_churn_tables(
    rows: int,
    *,
    seed: int = 0,
    scenario: str = "clean",
    start: datetime = DEFAULT_START,
    snapshots: int = SNAPSHOTS,
    snapshot_days: int = SNAPSHOT_DAYS,
) -> ChurnTables:
    """`rows` customers of `generate_churn(rows, scenario=scenario, seed=seed)` as feature tables."""
    if snapshots < 1 or snapshot_days < 2:
        raise DataGenerationError(
            f"need at least 1 snapshot at least 2 days apart, got {snapshots} every {snapshot_days}"
        )
    if start.tzinfo is None:
        raise DataGenerationError(f"start must carry a time zone (UTC), got {start}")
    flat = generate_churn(rows, scenario=scenario, seed=seed)
    rng = np.random.default_rng([seed, 28])
    ids = np.arange(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + rows, dtype=np.int64)
    # Each customer's snapshots fall on its own hour of the snapshot day.
    offset = pd.to_timedelta(rng.integers(0, 24 * 3600, rows), unit="s")
    first = pd.Timestamp(start) + offset
    last = first + pd.Timedelta(days=snapshot_days * (snapshots - 1))
    label_at = last + pd.to_timedelta(rng.integers(3600, (snapshot_days - 1) * 86400, rows), "s")

    profile = flat.loc[:, list(PROFILE_FEATURES)].copy()
    profile.insert(0, EVENT_TIMESTAMP, first - pd.Timedelta(days=1))
    profile.insert(0, ENTITY_KEY, ids)

    history = [
        _earlier(flat, months_back=snapshots - 1 - k, rng=rng).assign(
            **{EVENT_TIMESTAMP: first + pd.Timedelta(days=snapshot_days * k)}
        )
        for k in range(snapshots)
    ]
    activity = pd.concat([h.assign(**{ENTITY_KEY: ids}) for h in history], ignore_index=True).loc[
        :, [ENTITY_KEY, EVENT_TIMESTAMP, *ACTIVITY_FEATURES]
    ]
    activity = activity.sort_values([ENTITY_KEY, EVENT_TIMESTAMP], ignore_index=True)

    labels = pd.DataFrame(
        {ENTITY_KEY: ids, EVENT_TIMESTAMP: label_at, CHURN_SCHEMA.target: flat[CHURN_SCHEMA.target]}
    )
    flat_keyed = flat.copy()
    flat_keyed.insert(0, EVENT_TIMESTAMP, label_at)
    flat_keyed.insert(0, ENTITY_KEY, ids)
    return ChurnTables(
        labels=labels,
        customer_profile=_storable(profile),
        customer_activity=_storable(activity),
        flat=_storable(flat_keyed),
    )


def recent_start(now: datetime) -> datetime:
    """The `start` that puts each customer's latest activity snapshot `RECENT_SNAPSHOT_AGE` (up to
    a day more) before `now`: tables whose online values are fresh today, within the activity
    view's TTL, as a model server's lookup by key requires. Some labels then lie after `now`."""
    return now - timedelta(days=SNAPSHOT_DAYS * (SNAPSHOTS - 1)) - RECENT_SNAPSHOT_AGE


def _earlier(flat: pd.DataFrame, *, months_back: int, rng: np.random.Generator) -> pd.DataFrame:
    """The activity columns as they stood `months_back` months before the flat table's values.

    0 months back is the flat table itself (broken values included); earlier snapshots are derived
    from its numbers (a value that does not parse stays missing in the history)."""
    now = flat.loc[:, list(ACTIVITY_FEATURES)].copy()
    if months_back == 0:
        return now
    n = len(flat)
    num = {c: pd.to_numeric(now[c], errors="coerce") for c in ACTIVITY_FEATURES}
    tenure = (num["tenure_months"] - months_back).clip(lower=0)
    monthly = (num["monthly_charges"] * rng.uniform(0.95, 1.05, n)).round(2).clip(10, 250)
    total = (num["total_charges"] - months_back * num["monthly_charges"]).clip(lower=0).round(2)
    logins = (num["logins_30d"] * rng.uniform(0.6, 1.4, n)).round().clip(0, 300)
    tickets = rng.poisson(np.where(num["support_tickets_90d"].fillna(1) > 1, 1.5, 0.8), n)
    session = (num["avg_session_minutes"] * rng.uniform(0.7, 1.3, n)).round(2).clip(0, 600)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_tickets_90d": np.clip(tickets, 0, 30).astype(int),
            "logins_30d": logins,
            "avg_session_minutes": session,
        }
    )


def next_activity(activity: pd.DataFrame, at: datetime, *, seed: int = 0) -> pd.DataFrame:
    """The activity table with one more snapshot per customer, at `at`: what a nightly job that
    lands new data appends. Each customer's new snapshot is a month on from its latest one:
    tenure up by one, the month's charges (drawn near the last) added to the total, and usage
    (logins, tickets, session length) drawn again around its latest, each within the schema's
    range (a customer at the longest tenure stays there). Earlier rows are kept."""
    moment = pd.Timestamp(at)
    moment = moment.tz_localize(UTC) if moment.tzinfo is None else moment.tz_convert(UTC)
    latest = activity.sort_values(EVENT_TIMESTAMP).groupby(ENTITY_KEY).tail(1)
    latest = latest.sort_values(ENTITY_KEY).reset_index(drop=True)
    newest = latest[EVENT_TIMESTAMP].max()
    if moment <= newest:
        raise DataGenerationError(
            f"a new snapshot must come after the latest one ({newest.isoformat()}), got "
            f"{moment.isoformat()}"
        )
    rng = np.random.default_rng(seed)
    n = len(latest)
    num = {c: pd.to_numeric(latest[c], errors="coerce") for c in ACTIVITY_FEATURES}
    monthly = (num["monthly_charges"] * rng.uniform(0.95, 1.05, n)).round(2).clip(10, 250)
    tickets = rng.poisson(np.where(num["support_tickets_90d"].fillna(1) > 1, 1.5, 0.8), n)
    new = pd.DataFrame(
        {
            ENTITY_KEY: latest[ENTITY_KEY],
            "tenure_months": num["tenure_months"] + 1,
            "monthly_charges": monthly,
            "total_charges": (num["total_charges"] + monthly).round(2),
            "support_tickets_90d": np.clip(tickets, 0, 30),
            "logins_30d": (num["logins_30d"] * rng.uniform(0.6, 1.4, n)).round().clip(0, 300),
            "avg_session_minutes": (num["avg_session_minutes"] * rng.uniform(0.7, 1.3, n))
            .round(2)
            .clip(0, 600),
            EVENT_TIMESTAMP: moment,
        }
    )
    for feature in CHURN_SCHEMA.features:  # within the schema's ranges, as validation requires
        if feature.name in ACTIVITY_FEATURES:
            new[feature.name] = new[feature.name].clip(feature.min, feature.max)
    for col in activity.columns:  # the table's own types where the new values fit them
        numeric = col != EVENT_TIMESTAMP and pd.api.types.is_numeric_dtype(activity[col])
        if numeric and new[col].notna().all():
            new[col] = new[col].astype(activity[col].dtype)
    new[EVENT_TIMESTAMP] = new[EVENT_TIMESTAMP].astype(activity[EVENT_TIMESTAMP].dtype)
    return _storable(pd.concat([activity, new[list(activity.columns)]], ignore_index=True))


def _storable(df: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed types (the broken scenario's "n/a" among numbers) become text, so Parquet
    can store them and validation still sees the value that does not parse."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object:
            present = s.dropna()
            if len(present) and not all(isinstance(v, str) for v in present):
                out[col] = s.map(str).where(s.notna(), None)
    return out


def write_churn_tables(tables: ChurnTables, out_dir: str | Path) -> dict[str, str]:
    """Write each table as `<out_dir>/<name>.parquet` (a folder, or an object store prefix such as
    ``s3://bucket/features/data``); returns the paths by table name."""
    out = str(out_dir).rstrip("/")
    if "://" not in out:
        Path(out).mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    for name, frame in tables.frames().items():
        paths[name] = f"{out}/{name}.parquet"
        frame.to_parquet(paths[name], index=False)
    return paths
