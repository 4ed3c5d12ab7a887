"""Online features for requests that carry only the entity key: Feast's feature server over HTTP.

A V1 row `{"customer_id": 100042}` (or a V2 request's row of a `customer_id` input tensor: the
predictor reads the tensors into such rows) gets every feature it lacks from the feature server
(`POST /get-online-features` for the feature service), before schema validation, so the model,
the metrics and the drift monitor see the fetched values exactly as if the client had sent them.
Feast is not imported here: the model server talks HTTP (httpx) and reads each feature view's TTL
from the plain definitions in `components.feature_definitions`.

What a lookup can find, and the answer:

- every feature of a customer NOT_FOUND: the customer is unknown (404, naming the id). Feast's
  Redis online store answers a key it holds no row for with status PRESENT, a null value and
  the epoch as the event time (redis.py `_get_features_for_entity`: no `_ts:<view>` field, so a
  zero Timestamp); that is read as NOT_FOUND too (SQLite says NOT_FOUND itself);
- some features NOT_FOUND, or a value older than its view's TTL (Feast's online read does not
  apply TTLs, so the age is checked here from the value's event time): 400, naming the feature;
- a null value: passed on as null, and the schema decides (a nullable feature may be missing);
- the feature server unreachable or failing: 502.

A request mixes nothing: every row carries the key (and lacks features), or every row is full.

Lookups are coalesced: one call to the feature server is in flight at a time, and the keys of the
requests that arrive meanwhile go together in the next call (up to `max_batch_ids`). Feast's
server costs about the same for one key as for dozens, so under concurrent load this multiplies
the lookups per second; a lone request goes straight out, with no wait added.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import orjson

from components.feature_definitions import (
    CHURN_VIEWS,
    FEATURE_SERVICE,
    FeatureViewSpec,
)
from mlops_core.churn_feature_tables import ENTITY_KEY
from mlops_core.errors import InvalidInputError, MlopsError, NotFoundError
from serving.http_errors import UpstreamFailed

MAX_NAMED_IDS = 10  # unknown ids quoted in one message at most


class UnknownEntityError(NotFoundError):
    """The feature store has no features for the entity key a row carries."""


class FeatureUnavailableError(InvalidInputError):
    """A feature of a known entity is missing from the online store or older than its TTL."""


class MixedRowsError(InvalidInputError):
    """A request mixes rows that carry every feature with rows that carry only the entity key."""


class FeatureServerError(MlopsError, UpstreamFailed):
    """The feature server did not answer, or answered with an error (a server-side fault)."""


@dataclass(frozen=True)
class FetchedRow:
    values: dict[str, Any]
    event_times: dict[str, float]  # feature -> seconds since the epoch


@dataclass
class FeatureSource:
    """One feature server's online values for the rows of a request."""

    url: str
    features: Sequence[str]  # the model's features, in schema order
    views: Sequence[FeatureViewSpec] = CHURN_VIEWS
    feature_service: str = FEATURE_SERVICE
    entity_key: str = ENTITY_KEY
    timeout_s: float = 2.0
    clock: Callable[[], float] = time.time
    max_batch_ids: int = 1000  # keys in one call to the feature server at most
    calls: int = field(default=0, init=False)  # calls made to the feature server
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _waiting: list[tuple[list[Any], asyncio.Future[dict[Any, FetchedRow | None]]]] = field(
        default_factory=list, init=False, repr=False
    )
    _calling: bool = field(default=False, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)  # kept alive

    def _ttl_s(self, feature: str) -> float:
        for view in self.views:
            if feature in view.features:
                return view.ttl.total_seconds()
        return 0.0

    async def _post(self, ids: list[Any]) -> dict[str, Any]:
        if self._client is None:  # made in the server's event loop, on the first lookup
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        body = {"feature_service": self.feature_service, "entities": {self.entity_key: ids}}
        where = f"{self.url.rstrip('/')}/get-online-features"
        try:
            r = await self._client.post(where, json=body)
        except httpx.HTTPError as e:
            raise FeatureServerError(
                f"the feature server at {self.url} did not answer ({type(e).__name__}: {e}); "
                "check that `feast serve` runs there (MLOPS_FEATURE_SERVER_URL)"
            ) from e
        if r.status_code != 200:
            raise FeatureServerError(
                f"the feature server at {self.url} answered {r.status_code}: {r.text[:300]}"
            )
        doc: dict[str, Any] = orjson.loads(r.content)
        return doc

    async def fetch(self, ids: list[Any]) -> dict[Any, FetchedRow]:
        """Each distinct id's values and event times; raises for unknown ids."""
        distinct = list(dict.fromkeys(ids))
        future: asyncio.Future[dict[Any, FetchedRow | None]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((distinct, future))
        if not self._calling:
            self._calling = True
            self._task = asyncio.get_running_loop().create_task(self._call_until_drained())
        looked_up = await future
        unknown = [i for i in distinct if looked_up[i] is None]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:MAX_NAMED_IDS])
            raise UnknownEntityError(
                f"no features for {self.entity_key} {shown} in the feature store"
                + (
                    f" (and {len(unknown) - MAX_NAMED_IDS} more)"
                    if len(unknown) > MAX_NAMED_IDS
                    else ""
                )
                + "; send every feature for a customer it does not know"
            )
        return {i: row for i in distinct if (row := looked_up[i]) is not None}

    async def _call_until_drained(self) -> None:
        """One call at a time, each for every key waiting when it starts (up to the cap)."""
        try:
            while self._waiting:
                batch = [self._waiting.pop(0)]
                keys = dict.fromkeys(batch[0][0])
                while self._waiting and len(keys) + len(self._waiting[0][0]) <= self.max_batch_ids:
                    item = self._waiting.pop(0)
                    batch.append(item)
                    keys.update(dict.fromkeys(item[0]))
                try:
                    found = await self._lookup(list(keys))
                except Exception as e:  # every request of the call gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(found)
        finally:
            self._calling = False

    async def _lookup(self, distinct: list[Any]) -> dict[Any, FetchedRow | None]:
        """One call: each id's values and event times, None for an id with none."""
        self.calls += 1
        doc = await self._post(distinct)
        try:
            names = doc["metadata"]["feature_names"]
            results = doc["results"]
        except (KeyError, TypeError) as e:
            raise FeatureServerError(f"the feature server's answer lacks {e}") from e
        found: dict[Any, dict[str, Any]] = {i: {} for i in distinct}
        times: dict[Any, dict[str, float]] = {i: {} for i in distinct}
        for name, result in zip(names, results, strict=True):
            if name == self.entity_key:
                continue
            for i, value, status, at in zip(
                distinct,
                result["values"],
                result["statuses"],
                result["event_timestamps"],
                strict=True,
            ):
                moment = datetime.fromisoformat(at).timestamp()
                if status != "NOT_FOUND" and not (value is None and moment == 0):
                    found[i][name] = value
                    times[i][name] = moment
        return {i: FetchedRow(found[i], times[i]) if found[i] else None for i in distinct}

    def _checked(self, key: Any, fetched: FetchedRow, wanted: list[str]) -> dict[str, Any]:
        now = self.clock()
        values = {}
        for name in wanted:
            if name not in fetched.values:
                raise FeatureUnavailableError(
                    f"feature {name!r} of {self.entity_key} {key!r} is not in the online store; "
                    "materialize its feature view, or send the value"
                )
            ttl = self._ttl_s(name)
            age = now - fetched.event_times[name]
            if ttl > 0 and age > ttl:
                raise FeatureUnavailableError(
                    f"feature {name!r} of {self.entity_key} {key!r} is stale: its value is "
                    f"{age / 86400:.1f} days old, over its view's TTL of {ttl / 86400:.1f} days; "
                    "materialize newer data, or send the value"
                )
            values[name] = fetched.values[name]
        return values

    async def complete_rows(
        self, rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The rows with every feature (the entity key taken out), and, when any value was
        fetched, the values each row was scored with (key included); else None."""
        keyed = [
            self.entity_key in row and any(f not in row for f in self.features) for row in rows
        ]
        if not any(keyed):
            return [{k: v for k, v in row.items() if k != self.entity_key} for row in rows], None
        if not all(keyed):
            full = keyed.index(False)
            raise MixedRowsError(
                f"instances[{keyed.index(True)}] carries only the key {self.entity_key!r} but "
                f"instances[{full}] does not: send every row by key, or every row with all "
                "features, not both in one request"
            )
        fetched = await self.fetch([row[self.entity_key] for row in rows])
        completed, used = [], []
        for row in rows:
            key = row[self.entity_key]
            wanted = [f for f in self.features if f not in row]
            values = self._checked(key, fetched[key], wanted)
            full_row = {f: row[f] if f in row else values[f] for f in self.features}
            completed.append(full_row)
            used.append({self.entity_key: key, **full_row})
        return completed, used

    async def complete_v1(
        self, payload: Any, *, max_rows: int
    ) -> tuple[Any, list[dict[str, Any]] | None]:
        """A V1 body with key-only rows completed; anything else (a body of more than `max_rows`
        rows included: nothing is looked up for it) is returned as it came, for the validator
        to name what is wrong with it."""
        body = payload
        if isinstance(body, bytes):
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError:
                return payload, None
        rows = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not 0 < len(rows) <= max_rows:
            return payload, None
        if not all(type(r) is dict for r in rows):
            return payload, None
        completed, used = await self.complete_rows(rows)
        return {**body, "instances": completed}, used
