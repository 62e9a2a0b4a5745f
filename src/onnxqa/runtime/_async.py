"""The async API's machinery: tokenization threads, the scheduler, timeouts and cancellation.

Tokenization never runs on the event loop: requests are prepared on small thread pools (the
tokenizers library releases the GIL while it encodes). Requests with much text (over
``LARGE_CHARS`` characters) are prepared on a pool of one thread of their own, at a lower CPU
priority (``nice`` + ``LARGE_NICENESS``, where the OS sets it per thread), so a megabyte context
being tokenized never holds up a short request's tokenization, uses at most one core, and takes
little of the cores from the model while short requests are running. The prepared job then waits
in the :class:`~onnxqa.runtime._scheduler.Scheduler`.

A request that times out, or whose task is cancelled (a client that went away), gives up all of its
remaining work: it is not tokenized if it had not started, and its remaining windows never run.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .._errors import OverloadedError, RequestTimeoutError
from ._scheduler import Scheduler

__all__ = ["LARGE_CHARS", "AsyncFront"]

LARGE_CHARS = 32_768  # requests with more text than this (dozens of windows) tokenize on their own thread
LARGE_NICENESS = 5  # that thread's niceness above the process's (Linux: about a quarter of a busy core)


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority by LARGE_NICENESS (Linux sets niceness per thread);
    elsewhere a no-op."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + LARGE_NICENESS)
    except (AttributeError, OSError):
        pass


class _Abandoned(Exception):
    """The request was given up before its preparation started."""


class AsyncFront:
    """Thread pools and a scheduler made on first use; :meth:`close` is final."""

    def __init__(self, make_scheduler: Callable[[], Scheduler]) -> None:
        self._make_scheduler = make_scheduler
        self._scheduler: Scheduler | None = None
        self._small: ThreadPoolExecutor | None = None
        self._large: ThreadPoolExecutor | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Scheduler | None:
        return self._scheduler

    def _start(self) -> Scheduler:
        with self._lock:
            if self._closed:
                raise OverloadedError("closed: this QuestionAnswerer takes no more async requests", retry_after=5.0)
            if self._scheduler is None:
                self._small = ThreadPoolExecutor(
                    max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="onnxqa-prepare"
                )
                self._large = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="onnxqa-prepare-large", initializer=_lower_priority
                )
                self._scheduler = self._make_scheduler()
            return self._scheduler

    async def run(self, prepare: Callable[[], Any], *, chars: int, timeout: float | None) -> Any:
        """Prepare a job (on a pool thread) and run it on the scheduler within ``timeout`` seconds.

        Raises:
            OverloadedError: refused at admission (at once).
            RequestTimeoutError: not answered within ``timeout``.
            whatever ``prepare`` raises (InputError, RequestTooLargeError).
        """
        scheduler = self._start()
        slot = scheduler.reserve()
        loop = asyncio.get_running_loop()
        pool = self._large if chars > LARGE_CHARS else self._small
        abandoned = threading.Event()
        future: Future[Any] | None = None
        deadline = None if timeout is None else loop.time() + timeout

        def prepare_unless_abandoned() -> Any:
            if abandoned.is_set():
                raise _Abandoned
            return prepare()

        async def answer() -> Any:
            nonlocal future
            job = await loop.run_in_executor(pool, prepare_unless_abandoned)
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            future = scheduler.submit(job, slot, timeout=remaining)
            return await asyncio.wrap_future(future)

        try:
            return await asyncio.wait_for(answer(), timeout)
        except (asyncio.TimeoutError, RequestTimeoutError):
            raise RequestTimeoutError(f"no answer within the timeout of {timeout:g} s") from None
        finally:
            abandoned.set()
            if future is None:
                slot.release()
            elif not future.done():
                future.cancel()  # its remaining windows never run

    def submit(self, prepare: Callable[[], Any]) -> Future[Any]:
        """Prepare a job in the calling thread and queue it; cancelling the future drops what is left."""
        scheduler = self._start()
        slot = scheduler.reserve()
        try:
            job = prepare()
        except BaseException:
            slot.release()
            raise
        return scheduler.submit(job, slot)

    def close(self) -> None:
        """Finish the admitted requests, stop the threads; later requests get OverloadedError."""
        with self._lock:
            self._closed = True
            scheduler, pools = self._scheduler, (self._small, self._large)
        if scheduler is not None:
            scheduler.close()
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)
