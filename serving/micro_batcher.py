"""Opportunistic micro-batching: concurrent requests share one call into the model.

A scikit-learn Pipeline has a fixed cost per call (input checks, ColumnTransformer dispatch) that
dwarfs the per-row cost at small batches: one row costs nearly as much as fifty. So the predictor
does not call the model once per request. Requests queue their validated rows; one dedicated thread
runs the model on everything queued (up to `max_rows`), while the event loop keeps reading and
validating new requests. An idle server adds no wait: a lone request goes straight to the model.
Under load, the batch grows to whatever arrived during the previous call.

The model thread is the only thread that touches the model, so inference is single-threaded and
never contends with itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], *, max_rows: int) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self._queue: deque[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = deque()
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")

    async def run_in_model_thread(self, fn: Callable[[], T]) -> T:
        """Run other model work (explain) on the model thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.append((rows, future))
        if not self._draining:
            self._draining = True
            self._drain_task = loop.create_task(self._drain())
        return await future

    def _take_batch(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        batch = [self._queue.popleft()]
        total = batch[0][0].shape[0]
        while self._queue and total + self._queue[0][0].shape[0] <= self.max_rows:
            item = self._queue.popleft()
            batch.append(item)
            total += item[0].shape[0]
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._take_batch()
                rows = batch[0][0] if len(batch) == 1 else np.concatenate([r for r, _ in batch])
                try:
                    out = await loop.run_in_executor(self._executor, self._predict, rows)
                except Exception as e:  # every waiting request sees the model's failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                start = 0
                for r, future in batch:
                    stop = start + r.shape[0]
                    if not future.done():  # a client that went away cancelled its future
                        future.set_result(out[start:stop])
                    start = stop
        finally:
            self._draining = False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
