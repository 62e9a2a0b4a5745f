"""Dynamic batching: requests from many threads or tasks coalesced into few inference calls.

In the shape of text-embeddings-inference's queue and Triton's dynamic batcher: a bounded queue,
one worker thread that drains it up to a cost limit (windows) or a maximum wait, and a batching
function from a list of requests to a list of results (the shape of Ray Serve's ``@serve.batch``)
that does the work. A full queue refuses a request at once with :class:`OverloadedError`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from typing import Generic, TypeVar

from .._errors import InputError, OverloadedError

__all__ = ["BatchSettings", "Batcher", "Slot"]

R = TypeVar("R")
T = TypeVar("T")

# per device: windows per coalesced call, and how long the first request waits for company.
# On CPU a base-size model gains nothing from larger calls (one window keeps 2 cores busy; bigger
# calls pad more and keep a larger memory-arena peak) and serves best at 1 window per call, while a
# tiny one gains up to 16: 4 is the compromise measured at 64 clients (BENCHMARKS.md, Serving).
_DEFAULTS = {"cpu": (4, 0.0), "cuda": (128, 2.0)}


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """Limits of the dynamic batcher behind the async API.

    ``max_windows``: windows per coalesced inference call (a request with more windows still runs,
    alone, in calls of this size); ``None``: 4 on CPU, 128 on CUDA. ``max_wait_ms``: how long the
    first queued request waits for others to join its call; ``None``: 0 on CPU (a call takes what
    queued while the previous one ran), 2 on CUDA. ``max_queue``: requests admitted and not yet
    running; one more is refused at once with :class:`~onnxqa.OverloadedError`.
    """

    max_windows: int | None = None
    max_wait_ms: float | None = None
    max_queue: int = 256

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name != "max_queue":
                continue
            if f.name == "max_wait_ms":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                    raise InputError(f"max_wait_ms must be a number >= 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{f.name} must be an integer >= 1, got {value!r}")

    def resolved(self, device: str) -> BatchSettings:
        """Fill in the per-device defaults."""
        windows, wait = _DEFAULTS[device]
        return replace(
            self,
            max_windows=self.max_windows if self.max_windows is not None else windows,
            max_wait_ms=self.max_wait_ms if self.max_wait_ms is not None else wait,
        )


class Slot:
    """A place in the queue, reserved before a request is prepared; released exactly once."""

    def __init__(self, batcher: Batcher) -> None:  # type: ignore[type-arg]
        self._batcher = batcher
        self._held = True

    def release(self) -> None:
        self._batcher._release(self)


@dataclass
class _Entry(Generic[R, T]):
    item: R
    cost: int
    slot: Slot
    future: Future[T]


class Batcher(Generic[R, T]):
    """Runs ``fn(list of requests) -> list of results`` on one worker thread, coalescing requests.

    ``cost(request)`` (windows) bounds a call: requests join it, in arrival order, while the total
    stays within ``max_cost``; the first request of a call may exceed it alone. With
    ``coalesce=False`` each request runs in a call of its own (for models whose results depend on
    their batch neighbours). ``on_batch(requests, cost, seconds)`` is told about every call.
    """

    def __init__(
        self,
        fn: Callable[[list[R]], Sequence[T]],
        *,
        max_cost: int,
        max_wait_s: float,
        max_queue: int,
        cost: Callable[[R], int] = lambda _: 1,
        coalesce: bool = True,
        on_batch: Callable[[int, int, float], None] | None = None,
        name: str = "onnxqa-batcher",
    ) -> None:
        self._fn, self._cost, self._on_batch = fn, cost, on_batch
        self.max_cost, self.max_wait_s, self.max_queue, self.coalesce = max_cost, max_wait_s, max_queue, coalesce
        self._queue: deque[_Entry[R, T]] = deque()
        self._cond = threading.Condition()
        self._admitted = 0  # reserved slots: being prepared or queued
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests admitted and not yet running (being prepared or queued)."""
        return self._admitted

    def reserve(self) -> Slot:
        """A slot for one request, or :class:`OverloadedError` at once when ``max_queue`` are taken."""
        with self._cond:
            if self._closing:
                raise OverloadedError("shutting down: no new requests are accepted", retry_after=5.0)
            if self._admitted >= self.max_queue:
                raise OverloadedError(
                    f"overloaded: {self._admitted} requests are already waiting (max_queue={self.max_queue}); "
                    "retry later"
                )
            self._admitted += 1
        return Slot(self)

    def _release(self, slot: Slot) -> None:
        with self._cond:
            if slot._held:
                slot._held = False
                self._admitted -= 1

    def submit(self, item: R, slot: Slot | None = None) -> Future[T]:
        """Queue ``item`` in ``slot`` (reserved now when not given); its result comes in the future.

        Cancelling the future before the request runs drops it from the work.
        """
        slot = slot if slot is not None else self.reserve()
        future: Future[T] = Future()
        future.add_done_callback(lambda f: slot.release() if f.cancelled() else None)
        entry = _Entry(item, max(1, int(self._cost(item))), slot, future)
        with self._cond:
            if self._closing:
                slot.release()
                raise OverloadedError("shutting down: no new requests are accepted", retry_after=5.0)
            self._queue.append(entry)
            self._cond.notify()
        return future

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish the queued ones, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[_Entry[R, T]] | None:
        """The next call's requests: the oldest, then followers within max_cost and max_wait."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            if not self.coalesce:
                return batch
            total = batch[0].cost
            deadline = time.monotonic() + self.max_wait_s
            while total < self.max_cost:
                if not self._queue:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._closing:
                        break
                    self._cond.wait(remaining)
                    continue
                if total + self._queue[0].cost > self.max_cost:
                    break
                entry = self._queue.popleft()
                batch.append(entry)
                total += entry.cost
            return batch

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            for entry in batch:
                entry.slot.release()
            live = [e for e in batch if e.future.set_running_or_notify_cancel()]
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = list(self._fn([e.item for e in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"the batching function returned {len(results)} results for {len(live)}")
            except Exception as exc:  # handed to every caller of the call
                for e in live:
                    e.future.set_exception(exc)
                continue
            for e, result in zip(live, results):
                e.future.set_result(result)
            if self._on_batch is not None:
                try:
                    self._on_batch(len(live), sum(e.cost for e in live), time.perf_counter() - t0)
                except Exception:  # an observer must not stop the worker
                    pass
