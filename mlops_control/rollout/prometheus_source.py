"""Metrics from Prometheus (the cluster): instant PromQL queries over its HTTP API.

Each read sums the series over pods: `sum by (version, ...)` of the cumulative counters, selected
by model, version and an optional extra label selector (e.g. `namespace="mlops"`). A pod restart
drops the sum; the window delta then counts the new total (as `increase()` would, approximately).

Where the stable and the canary serve one version (an image-only rollout: same model, new serving
image), the version label cannot tell them apart; then each role's series are selected by its
pods' names (`pods`, from `components.isvc_traffic.role_pods`) and tagged with a `role` label.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from mlops_control.rollout.analysis import NoData, SourceFailed
from mlops_control.rollout.source import (
    ANALYSED_ENDPOINTS,
    DURATION_BUCKET,
    PREDICTION_BUCKETS,
    PROBABILITY_BUCKET,
    REQUESTS,
    Reading,
)
from mlops_control.rollout.window import Histogram, Snapshot, VersionCounters
from mlops_core.errors import MlopsError

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")
# A pod-name pattern as role_pods writes it: DNS-label characters and the class `[a-z0-9]+`.
_POD_PATTERN = re.compile(r"^([a-z0-9-]|\[a-z0-9\]\+)+$")


# The label an image-only rollout's series are tagged with, and its values, in query order.
ROLE_LABEL = "role"
ROLES = ("stable", "canary")


class PrometheusError(MlopsError):
    pass


def tagged_by_role(exprs: Iterable[tuple[str, str]]) -> str:
    """One PromQL expression of each (role, expression) pair, tagged with its `ROLE_LABEL`."""
    return " or ".join(
        f'label_replace({expr}, "{ROLE_LABEL}", "{role}", "", "")' for role, expr in exprs
    )


def _quote(value: str) -> str:
    if not _LABEL_VALUE.match(value):
        raise PrometheusError(f"label value {value!r} has characters a selector cannot take safely")
    return value


class PrometheusSource:
    def __init__(
        self,
        url: str,
        *,
        selector: str = "",
        timeout_s: float = 10.0,
        pods: tuple[str, str] | None = None,
    ) -> None:
        """`url` is Prometheus' base URL; `selector` extra matchers, e.g. 'namespace="mlops"';
        `pods` the stable's and the canary's pod-name patterns, where one version is both."""
        self.url = url.rstrip("/")
        self.selector = selector.strip().strip(",")
        self.timeout_s = timeout_s
        for pattern in pods or ():
            if not _POD_PATTERN.match(pattern):
                raise PrometheusError(f"pod pattern {pattern!r} is not a pod-name pattern")
        self.pods = pods

    def queries(self, model: str, versions: tuple[str, str]) -> dict[str, str]:
        """The PromQL this source runs (also shown by `mlops canary status`)."""
        endpoints = f'endpoint=~"{"|".join(ANALYSED_ENDPOINTS)}"'
        predictions = "|".join(PREDICTION_BUCKETS)  # the served task's prediction histogram
        # name -> (the label summed by beside version, the series for a selector)
        shapes: dict[str, tuple[str, Callable[[str], str]]] = {
            "requests": ("outcome", lambda sel: f"{REQUESTS}{{{sel},{endpoints}}}"),
            "latency": ("le", lambda sel: f"{DURATION_BUCKET}{{{sel},{endpoints}}}"),
            "predictions": ("le", lambda sel: f'{{__name__=~"{predictions}",{sel}}}'),
        }
        if self.pods is None:
            sel = self._selector(model, f'version=~"{"|".join(map(_quote, versions))}"')
            return {
                name: f"sum by (version, {by}) ({series(sel)})"
                for name, (by, series) in shapes.items()
            }
        # One version on both sides: each role's own pods, tagged with a `role` label.
        roles = [
            (role, self._selector(model, f'version="{_quote(v)}"', f'pod=~"{pods}"'))
            for role, v, pods in zip(ROLES, versions, self.pods, strict=True)
        ]
        return {
            name: tagged_by_role(
                (role, f"sum by (version, {by}) ({series(sel)})") for role, sel in roles
            )
            for name, (by, series) in shapes.items()
        }

    def _selector(self, model: str, *matchers: str) -> str:
        return ",".join(
            [f'model="{_quote(model)}"', *matchers, *([self.selector] if self.selector else [])]
        )

    def _query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout_s)
        try:
            doc = r.json()
        except ValueError as e:
            raise PrometheusError(f"HTTP {r.status_code}, not JSON: {r.text[:200]!r}") from e
        if not isinstance(doc, dict):
            raise PrometheusError(f"HTTP {r.status_code}, not a JSON object: {r.text[:200]!r}")
        if r.status_code != 200 or doc.get("status") != "success":
            raise PrometheusError(
                f"HTTP {r.status_code} {doc.get('errorType', '')}: {doc.get('error', r.text[:200])}"
            )
        data = doc.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            got = data.get("resultType") if isinstance(data, dict) else type(data).__name__
            raise PrometheusError(f"expected an instant vector, got {got!r}")
        result = data.get("result")
        if not isinstance(result, list):
            raise PrometheusError(f"expected a list of series, got {type(result).__name__}")
        return result

    def read(self, model: str, stable_version: str, canary_version: str) -> Reading:
        versions = (stable_version, canary_version)
        try:
            q = self.queries(model, versions)
            results = {name: self._query(promql) for name, promql in q.items()}
        except (httpx.HTTPError, PrometheusError) as e:
            return SourceFailed(f"Prometheus {self.url}: {e}"[:500])
        if not any(results.values()):
            # Not "no data yet" (a version not scraped yet): nothing matches at all, so the
            # selector or the scraping is wrong, which waiting will not cure.
            return SourceFailed(
                f"Prometheus {self.url} has no series of model {model!r} at all (does it scrape "
                f"the model servers, and does the selector {self.selector or '(none)'} match?)"
            )
        try:
            return self._snapshot(results, stable_version, canary_version)
        except (KeyError, IndexError, TypeError, ValueError, OverflowError) as e:
            return SourceFailed(f"Prometheus {self.url}: unusable answer: {e!r}"[:500])

    def _snapshot(
        self, results: dict[str, list[dict[str, Any]]], stable_version: str, canary_version: str
    ) -> Reading:
        """The answers as counters; raises on a malformed or non-finite sample."""
        requests: dict[str, float] = defaultdict(float)
        errors: dict[str, float] = defaultdict(float)
        latency: dict[str, dict[float, float]] = defaultdict(dict)
        probability: dict[str, dict[float, float]] = defaultdict(dict)

        def key(row: dict[str, Any]) -> str:  # the role where pods tell them, else the version
            return str(row["metric"].get(ROLE_LABEL if self.pods else "version", ""))

        for row in results["requests"]:
            v = key(row)
            value = _count(row["value"][1])
            requests[v] += value
            if row["metric"].get("outcome") == "5xx":
                errors[v] += value
        for name, into in (("latency", latency), ("predictions", probability)):
            for row in results[name]:
                v = key(row)
                le = float(row["metric"]["le"])
                if math.isnan(le):
                    raise ValueError(f"bucket bound le={row['metric']['le']!r}")
                into[v][le] = _count(row["value"][1])
        counters = {}
        for role, version in (("stable", stable_version), ("canary", canary_version)):
            v = role if self.pods else version
            missing = [
                n
                for n, have in (
                    (REQUESTS, v in requests),
                    (DURATION_BUCKET, v in latency),
                    (PROBABILITY_BUCKET, v in probability),
                )
                if not have
            ]
            if missing:
                where = f" (pods {self.pods[role == 'canary']})" if self.pods else ""
                return NoData(
                    f"Prometheus has no {', '.join(missing)} for {role} version {version}{where}"
                )
            counters[role] = VersionCounters(
                requests=round(requests[v]),
                errors=round(errors[v]),
                latency=Histogram.from_cumulative(latency[v]),
                predictions=Histogram.from_cumulative(probability[v]),
            )
        return Snapshot(stable=counters["stable"], canary=counters["canary"])


def _count(raw: object) -> float:
    """A counter sample: Prometheus sends it as a string; NaN, +-Inf or negative is no count."""
    value = float(raw)  # type: ignore[arg-type]  # str or number from JSON; anything else raises
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"sample {raw!r} is not a finite count")
    return value
