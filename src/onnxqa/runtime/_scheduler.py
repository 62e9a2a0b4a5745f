"""Window-level scheduling behind the async API: fair, cancellable, bounded by cost.

One worker thread runs inference calls of at most ``max_windows`` windows. While a long request
(more than ``LONG_FACTOR`` calls' worth of windows waiting) is in flight, a call also holds no
more windows than, at the model's measured speed (seconds per padded token, a moving average over
past calls), take ``max_call_s``: a call in progress is what a newly arrived short request waits for, so its length
is bounded in time, not only in windows (a tiny model still fills its calls, a base-size one on a
CPU runs about one full window per call). Short requests alone fill calls up to ``max_windows``:
fewer, fuller calls keep the throughput under load. Each call is filled from the
requests (jobs) in flight in **round robin, one window per request per turn**: the worker takes
the request at the head of the rotation, moves one of its windows into the call and sends the
request to the back while it has windows left, until the call is full. So

- a request of one window that arrives while long ones run waits for the call in progress and one
  window of each request ahead of it in the rotation, never for their whole length (the chunked
  prefill of LLM servers, at window granularity);
- every request in flight progresses at the same rate, so a long request is never starved by a
  stream of short ones (which shortest-remaining-first would need aging to prevent), and its
  latency grows with the number of requests it shares the model with, no more;
- concurrent short requests still share calls, so throughput under load is that of full calls.
  On CPU, where padding costs like any token, a window that would pad the call by more than
  10% is passed over for this call and keeps its place in the rotation,
  ahead of those taken (a call is filled from windows of about the same length: the head's
  window and those of similar width further back). The head's window is always taken, so a
  request still waits at most one call per request ahead of it in the rotation.

A request's windows are decoded as their calls finish and its answers assembled after its last
one: for batch-invariant variants they are exactly its answers alone. A variant that is not
batch-invariant (dynamic int8) runs each call with one request's windows only, in the very calls
that request would get alone (its ``units``), still in round robin between requests.

A request gives up its remaining windows before the next call once it is cancelled (its future's
``cancel()``, which the async API calls on timeout, task cancellation or client disconnect) or its
deadline passes: nothing more of it runs. Admission is bounded twice, and refused at once with
:class:`~onnxqa.OverloadedError` beyond either bound: requests admitted and not yet fully started
(``max_queue``) and windows waiting (``max_queue_windows``; a request that alone exceeds it is still
admitted when nothing else waits, so every request the server's body limit lets in can be answered).
``max_request_windows`` optionally refuses larger requests with
:class:`~onnxqa.RequestTooLargeError`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, fields, replace
from typing import Any

from .._errors import InputError, OverloadedError, RequestTimeoutError, RequestTooLargeError
from ._buckets import Batch

__all__ = ["BatchSettings", "Call", "Scheduler", "Slot"]

# per device: windows per inference call, and how long a call waits for company when not full.
# On CPU a base-size model gains nothing from larger calls (one window keeps 2 cores busy; bigger
# calls pad more and keep a larger memory-arena peak) and serves best at 1 window per call, while a
# tiny one gains up to 16: 4 is the compromise measured at 64 clients (BENCHMARKS.md, Serving).
_DEFAULTS = {"cpu": (4, 0.0), "cuda": (128, 2.0)}
# per device: about how long one call may take while requests compete (see BatchSettings.max_call_ms)
_CALL_MS = {"cpu": 50.0, "cuda": None}
# per device: how much padding a call may add to the tokens its windows hold (Scheduler's max_padding).
# On CPU padding is computed like any token: windows of questions over a search's passages vary from
# ~100 to 384 tokens, and 4 of them taken in turn from different requests would pad by a third
# (measured on SQuAD passages, BENCHMARKS.md, Serving); a window that would pad the call too much
# waits for the next one, first in it. On CUDA padding is nearly free and widths are bucketed anyway.
CALL_PADDING: dict[str, float | None] = {"cpu": 0.1, "cuda": None}
# windows that may wait, admitted and not yet run: see BatchSettings
DEFAULT_MAX_QUEUE_WINDOWS = 4096
# a request larger than max_queue_windows is admitted when nothing else waits, up to this many times it:
# the default 16,384 windows hold a 2 MiB context of any text at the default windowing (a token is at
# least one UTF-8 byte, and windows of 384 tokens advance by at least 188), while a request that asks
# for windows overlapping all but a few tokens cannot make hundreds of thousands of them
ALONE_FACTOR = 4


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    """Limits of the scheduler behind the async API.

    ``max_windows``: windows per inference call, taken in round robin from the requests in flight
    (a request with more windows runs in several calls, between other requests' windows);
    ``None``: 4 on CPU, 128 on CUDA. ``max_call_ms``: while a long request (more than 4 times
    ``max_windows`` windows waiting) is in flight, fewer windows go into a call when, at the model's
    measured speed, more would take longer than this (always at least one): what a short request
    waits for a call in progress. ``None``: 50 ms on CPU (a tiny model still fills its calls; a
    base-size one runs about one full 384-token window per call), no limit on CUDA; ``0``: no
    limit. ``max_wait_ms``: how long a call that is not full waits for
    more windows; ``None``: 0 on CPU (a call takes what queued while the previous one ran), 2 on
    CUDA. ``max_queue``: requests admitted and not all started; one more is refused at once with
    :class:`~onnxqa.OverloadedError`. ``max_queue_windows``: windows admitted and not yet run
    (4,096: two requests with 1 MiB contexts of English text, about 1,100 windows of 384 tokens
    each, still fit beside the other requests; on 2 CPU cores it is minutes of work for a base-size
    model, seconds for a tiny one); a request that would pass it is refused at once, unless
    nothing else waits, so any single request within 4 times it is admitted (see
    :attr:`window_cap`). ``max_request_windows``: refuse any request with more windows with
    :class:`~onnxqa.RequestTooLargeError` (``None``: only past :attr:`window_cap`).
    """

    max_windows: int | None = None
    max_call_ms: float | None = None
    max_wait_ms: float | None = None
    max_queue: int = 256
    max_queue_windows: int = DEFAULT_MAX_QUEUE_WINDOWS
    max_request_windows: int | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("max_windows", "max_call_ms", "max_wait_ms", "max_request_windows"):
                continue
            if f.name in ("max_wait_ms", "max_call_ms"):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                    raise InputError(f"{f.name} must be a number >= 0, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{f.name} must be an integer >= 1, got {value!r}")

    @property
    def window_cap(self) -> int:
        """The most windows one request may have: ``max_request_windows``, or else ``ALONE_FACTOR``
        (4) times ``max_queue_windows``, what a request may take when nothing else waits; a larger
        request is refused with :class:`~onnxqa.RequestTooLargeError`."""
        if self.max_request_windows is not None:
            return self.max_request_windows
        return ALONE_FACTOR * self.max_queue_windows

    def resolved(self, device: str) -> BatchSettings:
        """Fill in the per-device defaults."""
        windows, wait = _DEFAULTS[device]
        call_ms = self.max_call_ms if self.max_call_ms is not None else _CALL_MS[device]
        return replace(
            self,
            max_windows=self.max_windows if self.max_windows is not None else windows,
            max_call_ms=call_ms if call_ms else None,
            max_wait_ms=self.max_wait_ms if self.max_wait_ms is not None else wait,
        )


# a request is long, and calls are bounded in time while it is in flight, when more than this many
# calls' worth of its windows wait (16 on CPU): a question over a search's top passages (a handful
# of windows each) is not long, a context of tens of kilobytes is
LONG_FACTOR = 4

Call = list[tuple[Any, list[Batch]]]
"""One inference call: ``(job, units)``, each unit a :class:`Batch` of the job's window indices."""


class Slot:
    """A place among the admitted requests, reserved before a request is prepared; released once."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._held = True

    def release(self) -> None:
        self._scheduler._release(self)


@dataclass(eq=False)
class _Flight:
    """A request in flight: its job, the units of windows not yet taken, its future."""

    job: Any
    units: deque[Batch]
    waiting: int  # windows not yet taken into a call
    slot: Slot
    future: Future[Any]
    deadline: float | None
    running: int = 0  # windows in calls not yet finished
    failed: bool = False

    def gone(self) -> bool:
        return self.future.done() or self.failed


class Scheduler:
    """Runs jobs' windows on one worker thread; see the module's docstring.

    ``run_call(call) -> windows run`` runs one inference call and decodes it into its jobs;
    ``finish(job)`` gives a job's result once all of its windows are decoded. ``units(job)`` cuts a
    job into the batches it must run as when ``coalesce`` is False (each a call of its own);
    otherwise every window is a unit. ``max_padding``: a window joins a call (other than as its
    first) only while the call's padded tokens stay within ``1 + max_padding`` times the tokens its
    windows hold; ``None``: no such limit. ``on_call(requests, windows, seconds)`` is told about
    every call.
    """

    def __init__(
        self,
        run_call: Callable[[Call], int],
        finish: Callable[[Any], Any],
        *,
        max_windows: int,
        max_wait_s: float,
        max_queue: int,
        max_call_s: float | None = None,
        max_queue_windows: int,
        max_request_windows: int | None = None,
        coalesce: bool = True,
        max_padding: float | None = None,
        units: Callable[[Any], list[Batch]] | None = None,
        on_call: Callable[[int, int, float], None] | None = None,
        name: str = "onnxqa-scheduler",
    ) -> None:
        self._run_call, self._finish, self._units, self._on_call = run_call, finish, units, on_call
        self.max_windows, self.max_wait_s, self.coalesce = max_windows, max_wait_s, coalesce
        self.max_call_s, self.max_padding = max_call_s, max_padding
        self._seconds_per_token: float | None = None  # the model's measured speed, for max_call_s
        self.max_queue, self.max_queue_windows, self.max_request_windows = (
            max_queue,
            max_queue_windows,
            max_request_windows,
        )
        self._rotation: deque[_Flight] = deque()  # requests with windows waiting, in turn order
        self._cond = threading.Condition()
        self._admitted = 0  # reserved slots: being prepared, or with windows waiting
        self._waiting = 0  # windows admitted and not yet taken into a call
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ admission

    @property
    def depth(self) -> int:
        """Requests admitted whose windows have not all started (being prepared or waiting)."""
        return self._admitted

    @property
    def windows_waiting(self) -> int:
        """Windows admitted and not yet taken into a call."""
        return self._waiting

    @property
    def window_cap(self) -> int:
        """The most windows one request may have (see :meth:`BatchSettings.window_cap`)."""
        if self.max_request_windows is not None:
            return self.max_request_windows
        return ALONE_FACTOR * self.max_queue_windows

    def reserve(self) -> Slot:
        """A slot for one request, or :class:`OverloadedError` at once when ``max_queue`` requests are
        admitted or ``max_queue_windows`` windows already wait, or the scheduler is closing."""
        with self._cond:
            self._refuse_if_closing()
            if self._admitted >= self.max_queue:
                raise OverloadedError(
                    f"overloaded: {self._admitted} requests are already waiting (max_queue={self.max_queue}); "
                    "retry later"
                )
            if self._waiting >= self.max_queue_windows:
                raise OverloadedError(self._windows_message(0))
            self._admitted += 1
        return Slot(self)

    def _windows_message(self, own: int) -> str:
        asked = f" and this request has {own}" if own else ""
        return (
            f"overloaded: {self._waiting} windows are already waiting{asked} "
            f"(max_queue_windows={self.max_queue_windows}); retry later"
        )

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise OverloadedError("shutting down: no new requests are accepted", retry_after=5.0)

    def _release(self, slot: Slot) -> None:
        with self._cond:
            if slot._held:
                slot._held = False
                self._admitted -= 1
                if self._closing:
                    self._cond.notify_all()  # the worker stops once nothing is admitted

    def submit(self, job: Any, slot: Slot | None = None, *, timeout: float | None = None) -> Future[Any]:
        """Queue ``job`` in ``slot`` (reserved now when not given); its result comes in the future.

        ``timeout``: seconds from now after which the request gives up its remaining windows and
        the future gets :class:`RequestTimeoutError`. Cancelling the future does the same at once.
        A request admitted (its slot reserved) before :meth:`close` is still accepted.

        Raises:
            OverloadedError: ``max_queue_windows`` would be passed (or, without a slot, as :meth:`reserve`).
            RequestTooLargeError: the job has more windows than :attr:`window_cap`.
        """
        slot = slot if slot is not None else self.reserve()
        windows = len(job.windows)
        if windows > self.window_cap:
            slot.release()
            raise RequestTooLargeError(windows, self.window_cap)
        if self.coalesce or self._units is None:
            units = [Batch([i], 1, int(w.input_ids.shape[0])) for i, w in enumerate(job.windows)]
        else:
            units = self._units(job)
        future: Future[Any] = Future()
        deadline = None if timeout is None else time.monotonic() + timeout
        flight = _Flight(job, deque(units), windows, slot, future, deadline)
        with self._cond:
            if self._waiting and self._waiting + windows > self.max_queue_windows:
                slot.release()
                raise OverloadedError(self._windows_message(windows))
            if units:
                self._waiting += windows
                self._rotation.append(flight)
                self._cond.notify_all()
        if not units:  # nothing to run (a call whose documents are all empty)
            slot.release()
            self._complete(flight)
            return future
        future.add_done_callback(lambda _, f=flight: self._left(f))  # a cancelled request leaves at once
        return future

    def _left(self, flight: _Flight) -> None:
        """A request's future is done: if windows of it still wait (it was cancelled), drop them now."""
        with self._cond:
            if flight.units:
                self._abandon(flight)
                self._cond.notify_all()

    def _abandon(self, flight: _Flight) -> None:
        """Take a request's waiting windows out of the rotation and give its place back (lock held)."""
        try:
            self._rotation.remove(flight)
        except ValueError:
            pass
        self._waiting -= flight.waiting
        flight.waiting = 0
        flight.units.clear()
        flight.slot.release()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish the admitted ones (those still being prepared included), stop
        the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker

    def _drop_gone(self) -> list[_Flight]:
        """Requests past their deadline leave the rotation (lock held; the caller fails their futures
        with RequestTimeoutError once the lock is released). Cancelled ones already left (:meth:`_left`)."""
        now = time.monotonic()
        expired = [f for f in self._rotation if f.deadline is not None and now >= f.deadline]
        for f in expired:
            f.failed = True
            self._abandon(f)
        return expired

    def _take(self) -> list[tuple[_Flight, list[Batch]]] | None:
        """The next call: units taken in round robin, up to ``max_windows`` windows and ``max_call_s``;
        None to stop (closing, and nothing admitted is left)."""
        deadline: float | None = None
        while True:
            with self._cond:
                expired = self._drop_gone()
                if not expired:
                    if not self._rotation:
                        if self._closing and self._admitted == 0:
                            return None
                        deadline = None
                        self._cond.wait(0.5 if self._closing else None)
                        continue
                    full = not self.coalesce or self._waiting >= self.max_windows
                    if full or self.max_wait_s <= 0 or self._closing:
                        return self._fill()
                    if deadline is None:
                        deadline = time.monotonic() + self.max_wait_s
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return self._fill()
                    self._cond.wait(remaining)
                    continue
            # futures are completed outside the lock: their callbacks may call back in
            for f in expired:
                _set(f.future, exception=RequestTimeoutError("no answer within the request's timeout"))

    def _fill(self) -> list[tuple[_Flight, list[Batch]]]:
        taken: list[tuple[_Flight, list[Batch]]] = []
        passed: list[_Flight] = []  # requests passed over for this call: they keep their turn
        count = widest = tokens = 0
        # the time bound matters while a long request is in flight: its windows would fill every
        # call; short requests alone fill calls up to max_windows (fewer, longer calls: throughput)
        long = LONG_FACTOR * self.max_windows
        bounded = self.max_call_s is not None and any(f.waiting > long for f in self._rotation)
        while self._rotation:
            flight = self._rotation[0]
            unit = flight.units[0]
            size = len(unit.windows)
            if taken and (
                not self.coalesce
                or count + size > self.max_windows
                or (bounded and self._too_long(count + size, max(widest, unit.width)))
            ):
                break
            if taken and self._pads_too_much(count + size, max(widest, unit.width), tokens + size * unit.width):
                passed.append(self._rotation.popleft())
                continue
            self._rotation.popleft()
            flight.units.popleft()
            flight.waiting -= size
            flight.running += size
            self._waiting -= size
            count += size
            widest = max(widest, unit.width)
            tokens += size * unit.width
            if taken and taken[-1][0] is flight:
                taken[-1][1].append(unit)
            else:
                taken.append((flight, [unit]))
            if flight.units:
                self._rotation.append(flight)
            else:
                flight.slot.release()  # all of its windows have started
            if not self.coalesce:
                break
        self._rotation.extendleft(reversed(passed))  # first in the next call
        return taken

    def _pads_too_much(self, windows: int, width: int, tokens: int) -> bool:
        """Whether a call of ``windows`` windows padded to ``width`` would compute more than
        ``1 + max_padding`` times the ``tokens`` its windows hold."""
        return self.max_padding is not None and windows * width > (1 + self.max_padding) * tokens

    def _too_long(self, windows: int, width: int) -> bool:
        """Whether a call of ``windows`` windows padded to ``width`` would take longer than max_call_s."""
        if self.max_call_s is None or self._seconds_per_token is None:
            return False
        return windows * width * self._seconds_per_token > self.max_call_s

    def _measured(self, taken: list[tuple[_Flight, list[Batch]]], seconds: float) -> None:
        """Update the model's speed (seconds per padded token, a moving average) from a call."""
        units = [u for _, us in taken for u in us]
        tokens = max(u.width for u in units) * sum(len(u.windows) for u in units)
        sample = seconds / max(tokens, 1)
        old = self._seconds_per_token
        self._seconds_per_token = sample if old is None else 0.8 * old + 0.2 * sample

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            t0 = time.perf_counter()
            call: Call = [(f.job, units) for f, units in taken]
            try:
                windows = self._run_call(call)
            except BaseException as exc:  # handed to every request of the call; the others go on
                with self._cond:
                    for f, units in taken:
                        f.running -= sum(len(u.windows) for u in units)
                        f.failed = True
                        if f.units:
                            self._abandon(f)
                for f, _ in taken:
                    _set(f.future, exception=exc)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    self._fail_all(exc)
                    raise
                continue
            seconds = time.perf_counter() - t0
            if self.coalesce:
                self._measured(taken, seconds)
            for f, units in taken:
                f.running -= sum(len(u.windows) for u in units)
                if not f.gone() and f.running == 0 and not f.units:
                    self._complete(f)
            if self._on_call is not None:
                try:
                    self._on_call(len({id(f) for f, _ in taken}), windows, seconds)
                except Exception:  # an observer must not stop the worker
                    pass

    def _fail_all(self, exc: BaseException) -> None:
        """The worker is stopping for good: refuse new requests and fail every waiting one."""
        with self._cond:
            self._closing = True
            waiting = list(self._rotation)
            for f in waiting:
                f.failed = True
                self._abandon(f)
        for f in waiting:
            _set(f.future, exception=OverloadedError(f"the scheduler stopped: {exc!r}", retry_after=5.0))

    def _complete(self, flight: _Flight) -> None:
        try:
            result = self._finish(flight.job)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the tokenizers library's panics are BaseExceptions
            _set(flight.future, exception=exc)
            return
        _set(flight.future, result=result)


def _set(future: Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    """Complete ``future`` unless its caller cancelled it meanwhile."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass
