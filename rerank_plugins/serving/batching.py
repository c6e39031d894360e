"""The cross-request queue: concurrent requests share forward passes through the core's one loop.

Requests wait in a bounded queue. One worker takes the oldest request, gathers the requests queued
behind it (until ``max_batch_pairs`` pairs, or until the oldest has waited ``max_wait_ms``), and
scores them all with ONE ``Reranker.rerank_many`` call in a worker thread, so batching, normalisation
and sorting stay in the core. While that call runs, new requests queue up and form the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rerank_plugins.core import Reranker, Result

__all__ = ["BatchQueue", "QueueClosed", "QueueFull"]

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already (the server answers 503 with Retry-After)."""


class QueueClosed(Exception):
    """The server is shutting down and takes no new requests."""


@dataclass(eq=False)
class _Pending:
    query: str
    documents: list[str]
    future: asyncio.Future[list[Result]]
    enqueued: float = field(default=0.0)


class BatchQueue:
    """A bounded queue in front of :meth:`Reranker.rerank_many`.

    Args:
        reranker: the loaded reranker (one model instance per process).
        max_queue: requests allowed to wait; one more raises :class:`QueueFull`.
        max_wait_ms: how long the oldest waiting request may wait for others to join its batch.
        max_batch_pairs: pairs per ``rerank_many`` call (a larger single request still runs, alone).
        batching: ``False`` scores each request alone (one-at-a-time; for comparison).
        on_batch: called with ``(requests, pairs)`` after each batch (metrics).

    Example:
        >>> queue = BatchQueue(reranker, max_queue=64, max_wait_ms=5, max_batch_pairs=256)  # doctest: +SKIP
        >>> await queue.start(); results = await queue.submit("q", ["a", "b"])  # doctest: +SKIP
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        max_queue: int,
        max_wait_ms: float,
        max_batch_pairs: int,
        batching: bool = True,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._reranker = reranker
        self.max_queue = max_queue
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch_pairs = max_batch_pairs
        self.batching = batching
        self._on_batch = on_batch
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._pending)

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._worker = asyncio.create_task(self._run(), name="rerank-batch-worker")

    async def stop(self) -> None:
        """Refuse new requests; finish every queued one; then stop the worker."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._worker is not None:
            await self._worker

    async def submit(self, query: str, documents: list[str]) -> list[Result]:
        """Queue one request; its full ranked list (best first) once its batch has run.

        Raises:
            QueueFull: ``max_queue`` requests are waiting already.
            QueueClosed: the queue is stopping.
        """
        if self._closed or self._wake is None:
            raise QueueClosed("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)")
        loop = asyncio.get_running_loop()
        item = _Pending(query, documents, loop.create_future(), loop.time())
        self._pending.append(item)
        self._wake.set()
        return await item.future

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            batch = [self._pending.popleft()]
            pairs = len(batch[0].documents)
            deadline = batch[0].enqueued + self.max_wait
            while self.batching and pairs < self.max_batch_pairs:
                if not self._pending:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._closed:
                        break
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), remaining)
                    except TimeoutError:
                        break
                    continue
                if pairs + len(self._pending[0].documents) > self.max_batch_pairs:
                    break
                item = self._pending.popleft()
                batch.append(item)
                pairs += len(item.documents)
            await self._score(batch)

    async def _score(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # a client that went away is skipped
        if not live:
            return
        try:
            ranked = await asyncio.to_thread(
                self._reranker.rerank_many,
                [p.query for p in live],
                [p.documents for p in live],
                show_progress=False,
            )
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error
            logger.exception("scoring a batch of %d requests failed", len(live))
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        for p, results in zip(live, ranked, strict=True):
            if not p.future.done():
                p.future.set_result(results)
        if self._on_batch is not None:
            self._on_batch(len(live), sum(len(p.documents) for p in live))
