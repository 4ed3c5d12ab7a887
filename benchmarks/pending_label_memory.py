"""Memory of the label store's pending table when full: what `MLOPS_FEEDBACK_MAX_PENDING` costs.

Fills a `FeedbackStore` to its cap the way the server does: each request's rows go through the
server's own `RequestValidator.from_v1` (the object rows the store keeps) with a fresh uuid4 hex
request id, then reports the process's resident-set growth per pending row. The input rows are
built before the baseline is taken, so only what the store holds is counted.

    .venv/bin/python benchmarks/pending_label_memory.py [--cap 200000] [--rows-per-request 1]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import uuid

import numpy as np

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from serving.monitoring.feedback import FeedbackStore
from serving.request_validation import RequestLimits, RequestValidator
from serving.v1_instances import v1_instances


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=200_000)
    parser.add_argument("--rows-per-request", type=int, default=1)
    args = parser.parse_args()
    per = args.rows_per_request
    frame = generate_churn(5000, seed=3).drop(columns=[CHURN_SCHEMA.target])
    instances = v1_instances(frame)
    validator = RequestValidator(CHURN_SCHEMA, RequestLimits(max_rows=1000))
    store = FeedbackStore(model="churn", max_pending=args.cap)
    probabilities = np.full(per, 0.3)
    gc.collect()
    base, started, n = rss_bytes(), time.perf_counter(), 0
    while n < args.cap:
        i = n % (len(instances) - per)
        rows = validator.from_v1({"instances": instances[i : i + per]})
        ids = uuid.uuid4().hex if per == 1 else [uuid.uuid4().hex for _ in range(per)]
        store.observe(rows, probabilities, ids, "1")
        n += per
    gc.collect()
    grown = rss_bytes() - base
    print(
        f"cap {args.cap}, {per} row(s)/request: {store.pending()} pending rows, "
        f"RSS +{grown / 2**20:.1f} MiB = {grown / store.pending():.0f} B/row "
        f"({time.perf_counter() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
