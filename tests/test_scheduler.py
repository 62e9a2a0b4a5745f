"""The scheduler behind the async API: fairness between requests, cancellation, admission by cost.

The scheduler alone runs fake jobs whose windows are plain numbers, with a run function that
records each call (and can be held or slowed), so order and timing are exact. Then the async API
on a fake model (no export): chunked answers equal answers alone, cancellation and timeouts stop
a request's remaining windows, close() is final.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

import onnxqa
from onnxqa.runtime._scheduler import Scheduler


@dataclass(frozen=True)
class FakeWindow:
    input_ids: np.ndarray


@dataclass(eq=False)
class FakeJob:
    name: str
    n: int
    done: list[int] = field(default_factory=list)
    widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        widths = self.widths or tuple(8 + i for i in range(self.n))
        self.windows = [FakeWindow(np.zeros(w, dtype=np.int64)) for w in widths]


class Recorder:
    """The scheduler's run function: records each call as [(job name, window indices)], optionally held."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.calls: list[list[tuple[str, list[int]]]] = []
        self.seconds = seconds
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, call):
        self.started.set()
        assert self.gate.wait(10)
        self.calls.append([(job.name, [i for unit in units for i in unit.windows]) for job, units in call])
        for job, units in call:
            job.done.extend(i for unit in units for i in unit.windows)
        if self.seconds:
            time.sleep(self.seconds)
        return sum(len(unit.windows) for _, units in call for unit in units)


def scheduler(run, **kwargs) -> Scheduler:
    settings = {"max_windows": 4, "max_wait_s": 0.0, "max_queue": 100, "max_queue_windows": 1000, **kwargs}
    return Scheduler(run, lambda job: (job.name, sorted(job.done)), **settings)


def test_a_small_request_waits_one_call_not_the_whole_large_one():
    run = Recorder()
    run.gate.clear()
    s = scheduler(run)
    large = s.submit(FakeJob("large", 40))
    assert run.started.wait(10)  # the first call of the large request is running, held
    small = s.submit(FakeJob("small", 1))
    run.gate.set()
    assert small.result(10) == ("small", [0])
    assert large.result(10) == ("large", list(range(40)))
    s.close()
    calls_with_small = [i for i, call in enumerate(run.calls) if any(name == "small" for name, _ in call)]
    assert calls_with_small == [1], run.calls[:3]  # the call right after the one in progress
    assert all(sum(len(items) for _, items in call) <= 4 for call in run.calls)


def test_round_robin_one_window_per_request_per_turn():
    run = Recorder()
    run.gate.clear()
    s = scheduler(run)
    first = s.submit(FakeJob("a", 6))
    assert run.started.wait(10)
    rest = [s.submit(FakeJob(name, n)) for name, n in (("b", 6), ("c", 2))]
    run.gate.set()
    for f in (first, *rest):
        f.result(10)
    s.close()
    # call 0 took a's first 4 windows alone; then a, b, c share calls one window each per turn
    assert run.calls[0] == [("a", [0, 1, 2, 3])]
    assert run.calls[1] == [("a", [4]), ("b", [0]), ("c", [0]), ("a", [5])]
    assert run.calls[2] == [("b", [1]), ("c", [1]), ("b", [2, 3])]
    assert run.calls[3] == [("b", [4, 5])]


def test_with_max_padding_a_call_takes_windows_of_about_one_width_and_passed_ones_go_first():
    run = Recorder()
    run.gate.clear()
    s = scheduler(run, max_padding=0.1)
    first = s.submit(FakeJob("first", 1))
    assert run.started.wait(10)
    jobs = [("a", (300,)), ("b", (100,)), ("c", (290,)), ("d", (110,)), ("e", (120, 305))]
    futures = [s.submit(FakeJob(name, len(w), widths=w)) for name, w in jobs]
    run.gate.set()
    for f in (first, *futures):
        f.result(10)
    s.close()
    # a (300) heads call 1: b (100) and d (110) would pad it by half, c (290) does not; e's first
    # window (120) would too. b, d and e keep their turn, ahead of those taken, and head call 2;
    # e's second window (305) waits for call 3
    assert run.calls[1] == [("a", [0]), ("c", [0])]
    assert run.calls[2] == [("b", [0]), ("d", [0]), ("e", [0])]
    assert run.calls[3] == [("e", [1])]


def test_a_stream_of_small_requests_does_not_starve_a_large_one():
    run = Recorder()
    s = scheduler(run, max_windows=2)
    large = s.submit(FakeJob("large", 10))
    smalls = []
    for i in range(40):  # one new small request per call: the large one still gets a window per turn
        smalls.append(s.submit(FakeJob(f"s{i}", 1)))
        time.sleep(0.002)
    assert large.result(10)[1] == list(range(10))
    assert all(f.result(10) for f in smalls)
    s.close()
    finished = max(i for i, call in enumerate(run.calls) if any(n == "large" for n, _ in call))
    assert finished < 30, f"the large request finished in call {finished} of {len(run.calls)}"


def test_calls_shrink_to_the_time_budget_once_the_model_speed_is_known():
    class Timed(Recorder):
        def __call__(self, call):
            windows = super().__call__(call)
            width = max(u.width for _, units in call for u in units)
            time.sleep(windows * width * 0.0005)  # 0.5 ms per padded token
            return windows

    run = Timed()
    s = scheduler(run, max_call_s=0.012)  # windows of 8-15 tokens: 2 fit in 12 ms, 4 do not
    s.submit(FakeJob("first", 4)).result(10)  # short: full calls, and the speed is measured
    short = [s.submit(FakeJob(name, 2)) for name in "ab"]
    for f in short:
        f.result(10)
    long = s.submit(FakeJob("long", 24))  # more than 4 calls' worth of windows: calls are bounded in time
    long.result(10)
    s.close()
    sizes = [sum(len(items) for _, items in call) for call in run.calls]
    assert sizes[0] == 4 and 4 in sizes[1:3], sizes  # short requests alone fill their calls
    long_calls = [len(call[0][1]) for call in run.calls if call[0][0] == "long"]
    # while more than 16 of its windows wait its calls are bounded in time; its last 16 fill calls
    assert max(long_calls[:3]) <= 2, long_calls
    assert sum(long_calls) == 24 and long_calls[-4:] == [4, 4, 4, 4], long_calls


def test_cancelling_a_request_drops_its_remaining_windows_before_the_next_call():
    run = Recorder(seconds=0.01)
    s = scheduler(run)
    job = FakeJob("large", 400)
    future = s.submit(job)
    while len(job.done) < 8:
        time.sleep(0.005)
    assert future.cancel()  # pending futures can be cancelled while the request runs
    ran = len(job.done)
    time.sleep(0.1)
    assert len(job.done) <= ran + 4, "more than the call in progress ran after the cancel"
    assert s.windows_waiting == 0 and s.depth == 0
    assert s.submit(FakeJob("next", 1)).result(10) == ("next", [0])
    s.close()


def test_a_request_past_its_timeout_stops_and_gets_timeout_error():
    run = Recorder(seconds=0.01)
    s = scheduler(run)
    job = FakeJob("large", 400)
    future = s.submit(job, timeout=0.1)
    with pytest.raises(onnxqa.RequestTimeoutError):
        future.result(10)
    ran = len(job.done)
    time.sleep(0.1)
    assert len(job.done) == ran and ran < 400
    s.close()


def test_admission_by_requests_and_by_windows():
    run = Recorder()
    run.gate.clear()
    s = scheduler(run, max_queue=3, max_queue_windows=10)
    first = s.submit(FakeJob("first", 3))
    assert run.started.wait(10)  # its 3 windows are taken: nothing waits
    with pytest.raises(onnxqa.RequestTooLargeError):
        s.submit(FakeJob("too large", 41))  # more than 4 times max_queue_windows: never
    huge = s.submit(FakeJob("huge", 30))  # alone it exceeds max_queue_windows, but nothing else waits
    with pytest.raises(onnxqa.OverloadedError, match="windows"):
        s.submit(FakeJob("more", 1))  # 26 windows wait: refused at once
    with pytest.raises(onnxqa.OverloadedError, match="windows"):
        s.reserve()  # already past the bound: refused before any tokenization
    run.gate.set()
    assert first.result(10) and huge.result(10)
    assert s.submit(FakeJob("later", 2)).result(10) == ("later", [0, 1])
    s.close()


def test_request_count_bound_and_per_request_cap():
    run = Recorder()
    run.gate.clear()
    s = scheduler(run, max_queue=2, max_request_windows=5)
    with pytest.raises(onnxqa.RequestTooLargeError) as info:
        s.submit(FakeJob("big", 6))
    assert (info.value.windows, info.value.limit) == (6, 5) and "6 windows" in str(info.value)
    assert isinstance(info.value, onnxqa.InputError)
    running = s.submit(FakeJob("running", 1))
    assert run.started.wait(10)
    waiting = [s.submit(FakeJob("w1", 1)), s.submit(FakeJob("w2", 1))]
    with pytest.raises(onnxqa.OverloadedError) as overloaded:
        s.submit(FakeJob("w3", 1))
    assert overloaded.value.retry_after > 0
    run.gate.set()
    assert [f.result(10)[0] for f in (running, *waiting)] == ["running", "w1", "w2"]
    s.close()


def test_not_coalescing_runs_each_request_in_its_own_units():
    run = Recorder()
    run.gate.clear()
    from onnxqa.runtime._buckets import Batch

    def units(job):
        return [Batch([0, 1], 2, 9), Batch([2], 1, 10)]

    s = scheduler(run, coalesce=False, units=units)
    first = s.submit(FakeJob("first", 3))
    assert run.started.wait(10)  # the others queue behind its first unit
    a, b = s.submit(FakeJob("a", 3)), s.submit(FakeJob("b", 3))
    run.gate.set()
    first.result(10), a.result(10), b.result(10)
    s.close()
    assert run.calls[1:] == [[("first", [2])], [("a", [0, 1])], [("b", [0, 1])], [("a", [2])], [("b", [2])]]


def test_an_error_in_a_call_reaches_its_requests_only():
    def run(call):
        if any(job.name == "bad" for job, _ in call):
            raise RuntimeError("boom")
        for job, units in call:
            job.done.extend(i for u in units for i in u.windows)
        return 1

    s = scheduler(run, max_windows=1)
    bad, good = s.submit(FakeJob("bad", 2)), s.submit(FakeJob("good", 2))
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(10)
    assert good.result(10) == ("good", [0, 1])
    s.close()


def test_close_finishes_admitted_requests_then_refuses():
    run = Recorder(seconds=0.005)
    s = scheduler(run)
    futures = [s.submit(FakeJob(str(i), 3)) for i in range(3)]
    s.close()
    assert [f.result(0)[0] for f in futures] == ["0", "1", "2"]
    with pytest.raises(onnxqa.OverloadedError):
        s.submit(FakeJob("x", 1))


def test_batch_settings_are_checked():
    for bad in (
        {"max_call_ms": -1},
        {"max_windows": 0},
        {"max_queue": 0},
        {"max_wait_ms": -1},
        {"max_windows": 1.5},
        {"max_queue_windows": 0},
        {"max_request_windows": 0},
    ):
        with pytest.raises(onnxqa.InputError):
            onnxqa.BatchSettings(**bad)
    assert onnxqa.BatchSettings().resolved("cpu").max_windows >= 1
    assert onnxqa.BatchSettings().resolved("cpu").max_call_ms == 50
    assert onnxqa.BatchSettings(max_call_ms=0).resolved("cpu").max_call_ms is None
    assert onnxqa.BatchSettings().resolved("cuda").max_call_ms is None


# ---------------------------------------------------------------- the async API on a fake model


CONTEXT = "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931."


@pytest.fixture(scope="module")
def pairs(squad_v2):
    long_context = " ".join(q["context"] for q in squad_v2[:600:40])  # dozens of windows
    return [(q["question"], q["context"]) for q in squad_v2[:30]] + [
        ("Who designed the bridge?", long_context),
        ("What did it open?", long_context),
    ]


async def _together(qa, pairs, **options):
    return await asyncio.gather(*(qa.batch_with_null_async([pair], **options) for pair in pairs))


@pytest.mark.parametrize("max_windows", [1, 3, 16])
def test_chunked_answers_equal_answers_alone(fake_model, pairs, max_windows):
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_windows=max_windows)) as qa:
        calls: list[int] = []
        qa.add_batch_listener(lambda requests, windows, seconds: calls.append(requests))
        for options in ({}, {"top_k": 3, "handle_impossible_answer": True, "max_seq_len": 128, "doc_stride": 32}):
            together = asyncio.run(_together(qa, pairs, **options))
            alone = [qa.batch_with_null([pair], **options) for pair in pairs]
            assert together == alone  # spans, scores and no-answer scores, exactly
        assert max(calls) > 1 or max_windows == 1, "windows of concurrent requests never shared a call"


def test_documents_through_the_scheduler_equal_answer_documents(fake_model, pairs):
    docs = [c for _, c in pairs[::5]]
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_windows=3)) as qa:

        async def ask():
            return await asyncio.gather(
                qa.answer_documents_async("Who designed it?", docs),
                qa.answer_documents_async("When?", docs, top_k=5, no_answer=False),
                qa.batch_async(pairs[:4]),
            )

        first, second, third = asyncio.run(ask())
        assert first == qa.answer_documents("Who designed it?", docs)
        assert second == qa.answer_documents("When?", docs, top_k=5, no_answer=False)
        assert third == qa.batch(pairs[:4])


def test_dynamic_int8_requests_run_alone_in_the_calls_they_get_alone(fake_model_dynamic, pairs):
    with onnxqa.load(fake_model_dynamic, precision="int8", batch_size=2) as qa:
        assert not qa.batch_invariant
        calls: list[tuple[int, int]] = []
        qa.add_batch_listener(lambda requests, windows, seconds: calls.append((requests, windows)))
        together = asyncio.run(_together(qa, pairs[-6:]))
        assert together == [qa.batch_with_null([pair]) for pair in pairs[-6:]]
        assert calls and {r for r, _ in calls} == {1} and max(w for _, w in calls) <= 2


class _HeldAfterFirst:
    """Wraps a loaded model's engine: every inference call after the first waits for ``release``."""

    def __init__(self, engine) -> None:
        self.engine, self.release, self.calls = engine, threading.Event(), 0

    def run(self, *args):
        self.calls += 1
        if self.calls > 1:
            assert self.release.wait(10)
        return self.engine.run(*args)


def test_a_timed_out_request_stops_and_frees_the_model(fake_model, pairs):
    long_context = " ".join([pairs[-1][1]] * 20)
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_windows=1)) as qa:
        windows_run: list[int] = []
        qa.add_batch_listener(lambda requests, windows, seconds: windows_run.append(windows))
        held = qa._engine = _HeldAfterFirst(qa._engine)  # still running at its timeout, on any CPU

        async def scenario():
            with pytest.raises(onnxqa.RequestTimeoutError):
                await qa.answer_async("Who?", long_context, timeout=0.5)
            held.release.set()
            ran = sum(windows_run)
            assert held.calls >= 1  # it reached the model before its timeout
            await asyncio.sleep(0.2)
            return ran, sum(windows_run)

        ran, later = asyncio.run(scenario())
        total = len(
            qa._windower.windows([("Who?", long_context)], max_seq_len=384, doc_stride=128, max_question_len=64)
        )
        assert later <= ran + 1 and later < total
        assert qa.queue_depth == 0 and qa.windows_waiting == 0


def test_a_cancelled_task_stops_its_request(fake_model, pairs):
    long_context = " ".join([pairs[-1][1]] * 20)
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_windows=1)) as qa:
        windows_run: list[int] = []
        qa.add_batch_listener(lambda requests, windows, seconds: windows_run.append(windows))

        async def scenario():
            task = asyncio.ensure_future(qa.answer_async("Who?", long_context))
            while not windows_run:
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ran = sum(windows_run)
            await asyncio.sleep(0.2)
            return ran, sum(windows_run)

        ran, later = asyncio.run(scenario())
        assert later <= ran + 1
        assert asyncio.run(qa.answer_async("Who?", CONTEXT)) == qa("Who?", CONTEXT)


def test_submit_future_cancel_stops_the_request(fake_model, pairs):
    long_context = " ".join([pairs[-1][1]] * 20)
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_windows=1)) as qa:
        windows_run: list[int] = []
        qa.add_batch_listener(lambda requests, windows, seconds: windows_run.append(windows))
        future = qa.submit([("Who?", long_context)])
        while not windows_run:
            time.sleep(0.001)
        assert future.cancel()
        ran = sum(windows_run)
        time.sleep(0.2)
        assert sum(windows_run) <= ran + 1
        assert qa.submit([("Who?", CONTEXT)]).result(10) == qa.batch_with_null([("Who?", CONTEXT)])


def _schedulers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "onnxqa-scheduler" and t.is_alive())


def test_close_is_final_and_the_context_manager_closes(fake_model):
    before = _schedulers()
    with onnxqa.load(fake_model) as qa:
        assert asyncio.run(qa.answer_async("Who?", CONTEXT)) == qa("Who?", CONTEXT)
    with pytest.raises(onnxqa.OverloadedError, match="closed"):
        asyncio.run(qa.answer_async("Who?", CONTEXT))
    with pytest.raises(onnxqa.OverloadedError, match="closed"):
        qa.submit([("Who?", CONTEXT)])
    assert qa("Who?", CONTEXT)  # the synchronous API keeps working
    assert _schedulers() == before  # its scheduler's thread has stopped


def test_async_errors(fake_model):
    with onnxqa.load(fake_model, batching=onnxqa.BatchSettings(max_request_windows=2)) as qa:
        with pytest.raises(onnxqa.InputError):
            asyncio.run(qa.answer_async(" ", CONTEXT))
        with pytest.raises(onnxqa.InputError):
            asyncio.run(qa.answer_async("Who?", CONTEXT, top_k=0))
        with pytest.raises(onnxqa.InputError):
            asyncio.run(qa.answer_async("Who?", CONTEXT, timeout=0))
        with pytest.raises(onnxqa.RequestTooLargeError):
            asyncio.run(qa.answer_async("Who?", " ".join([CONTEXT] * 100)))
        assert qa.queue_depth == 0


def test_stage_listener_hears_every_stage(fake_model, pairs):
    with onnxqa.load(fake_model) as qa:
        heard: dict[str, int] = {}
        qa.add_stage_listener(lambda stage, seconds, windows: heard.__setitem__(stage, heard.get(stage, 0) + windows))
        qa.batch(pairs[:5])
        assert set(heard) == set(onnxqa.runtime.STAGES)
        assert heard["tokenize"] == heard["model"] == heard["assemble"] >= 5


# ---------------------------------------------------------------- the async API on real exports


def _spans(results):
    return [[(a.text, a.start, a.end) for a in answers] for answers, _ in results]


def _flat(per_request):
    return [result for results in per_request for result in results]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_exported_model_chunked_answers_equal_answers_alone(tiny, pairs, precision):
    """fp32 and static int8 (batch-invariant): windows shared with other requests give the same answers."""
    with onnxqa.load(tiny, device="cpu", precision=precision, batching=onnxqa.BatchSettings(max_windows=4)) as qa:
        assert qa.batch_invariant
        for options in ({}, {"top_k": 3, "handle_impossible_answer": True}):
            together = _flat(asyncio.run(_together(qa, pairs, **options)))
            alone = _flat([qa.batch_with_null([pair], **options) for pair in pairs])
            assert _spans(together) == _spans(alone)
            for (a, null_a), (b, null_b) in zip(together, alone):
                assert [x.score for x in a] == pytest.approx([y.score for y in b], rel=1e-5, abs=1e-9)
                assert null_a == pytest.approx(null_b, rel=1e-5, abs=1e-9)


def test_exported_dynamic_int8_is_never_coalesced(tiny_dynamic, pairs):
    with onnxqa.load(tiny_dynamic, device="cpu", precision="int8") as qa:
        assert not qa.batch_invariant
        calls: list[int] = []
        qa.add_batch_listener(lambda requests, windows, seconds: calls.append(requests))
        together = asyncio.run(_together(qa, pairs[-8:]))
        assert together == [qa.batch_with_null([pair]) for pair in pairs[-8:]]  # identical, scores included
        assert calls and set(calls) == {1}


def test_a_request_over_the_window_cap_is_refused_before_its_windows_are_made(fake_model):
    """Windows that overlap all but a few tokens would make a huge request out of a modest context:
    the async API counts them from the text first and refuses, naming the count and the cap."""
    context = " ".join([CONTEXT] * 400)  # about 7,000 tokens
    settings = onnxqa.BatchSettings(max_queue_windows=100)  # a request may take 400 windows alone
    with onnxqa.load(fake_model, batching=settings) as qa:
        assert settings.window_cap == 400
        made: list[int] = []
        qa.add_stage_listener(lambda stage, seconds, windows: made.append(windows) if stage == "tokenize" else None)
        with pytest.raises(onnxqa.RequestTooLargeError) as info:
            asyncio.run(qa.answer_async("Who?", context, max_seq_len=64, doc_stride=56))
        assert info.value.limit == 400 and info.value.windows > 400
        assert not made, "the windows were made before the refusal"
        expected = len(qa.window_lengths([("Who?", context)], max_seq_len=64, doc_stride=56))
        assert abs(info.value.windows - expected) <= 1  # counted, not estimated
        assert asyncio.run(qa.answer_async("Who?", context)) == qa("Who?", context)  # default windows fit
        with pytest.raises(onnxqa.RequestTooLargeError):
            asyncio.run(qa.answer_documents_async("Who?", [context], max_seq_length=64, stride=56))


def test_dynamic_int8_async_plans_calls_as_the_sync_api(fake_model_dynamic, pairs):
    many = (pairs * 12)[:300]  # more pairs than the synchronous API prepares at once
    docs = [c for _, c in pairs[::6]]
    with onnxqa.load(fake_model_dynamic, precision="int8", batch_size=3) as qa:

        async def ask():
            return await asyncio.gather(
                qa.batch_with_null_async(many), qa.answer_documents_async("Who designed it?", docs)
            )

        together, documents = asyncio.run(ask())
        assert together == qa.batch_with_null(many)
        assert documents == qa.answer_documents("Who designed it?", docs)


def test_close_answers_requests_admitted_while_they_tokenize(fake_model):
    context = " ".join([CONTEXT] * 3000)  # tokenized on the large requests' thread for a while
    qa = onnxqa.load(fake_model)

    async def scenario():
        request = asyncio.ensure_future(qa.answer_async("Who?", context))
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, qa.close)
        return await request

    assert asyncio.run(scenario()) == qa("Who?", context)
