"""The dynamic batcher alone (no model), and the async API on the tiny model: answers coalesced
equal answers alone, timeouts, the queue limit, int8 never coalesced."""

from __future__ import annotations

import asyncio
import threading

import pytest

import onnxqa
from onnxqa.runtime._batcher import Batcher

CONTEXT = "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931."


class Gate:
    """A batching function that records its calls and holds the first one until opened."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.started = threading.Event()
        self.open = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        self.started.set()
        assert self.open.wait(10)
        return [i * 10 for i in items]


def test_requests_queued_behind_a_call_are_coalesced_up_to_max_cost():
    gate = Gate()
    b = Batcher(gate, max_cost=5, max_wait_s=0.0, max_queue=100, cost=lambda i: 2)
    first = b.submit(0)
    assert gate.started.wait(10)
    rest = [b.submit(i) for i in range(1, 6)]
    gate.open.set()
    assert [f.result(10) for f in [first, *rest]] == [0, 10, 20, 30, 40, 50]
    b.close()
    assert gate.calls[0] == [0]
    assert gate.calls[1:] == [[1, 2], [3, 4], [5]]  # cost 2 each, at most 5 per call


def test_without_coalescing_every_request_runs_alone():
    gate = Gate()
    b = Batcher(gate, max_cost=100, max_wait_s=0.0, max_queue=100, coalesce=False)
    futures = [b.submit(i) for i in range(4)]
    gate.open.set()
    assert [f.result(10) for f in futures] == [0, 10, 20, 30]
    b.close()
    assert gate.calls == [[0], [1], [2], [3]]


def test_max_wait_lets_later_requests_join():
    calls: list[list[int]] = []
    b = Batcher(lambda items: calls.append(items) or items, max_cost=10, max_wait_s=0.5, max_queue=10)
    first = b.submit(1)
    second = b.submit(2)  # well within the first one's wait
    assert first.result(10) == 1 and second.result(10) == 2
    b.close()
    assert calls == [[1, 2]]


def test_full_queue_refuses_at_once_and_recovers():
    gate = Gate()
    b = Batcher(gate, max_cost=10, max_wait_s=0.0, max_queue=2)
    running = b.submit(0)
    assert gate.started.wait(10)
    queued = [b.submit(1), b.submit(2)]
    with pytest.raises(onnxqa.OverloadedError) as info:
        b.submit(3)
    assert info.value.retry_after > 0 and b.depth == 2
    gate.open.set()
    assert running.result(10) == 0 and [f.result(10) for f in queued] == [10, 20]
    assert b.submit(4).result(10) == 40
    b.close()


def test_cancelled_requests_are_dropped_and_errors_reach_every_caller():
    gate = Gate()
    b = Batcher(gate, max_cost=10, max_wait_s=0.0, max_queue=10)
    b.submit(0)
    assert gate.started.wait(10)
    dropped, kept = b.submit(1), b.submit(2)
    assert dropped.cancel()
    gate.open.set()
    assert kept.result(10) == 20
    b.close()
    assert [1] not in gate.calls and all(1 not in call for call in gate.calls)

    def fail(items: list[int]) -> list[int]:
        raise RuntimeError("boom")

    b = Batcher(fail, max_cost=10, max_wait_s=0.1, max_queue=10)
    futures = [b.submit(i) for i in range(3)]
    for f in futures:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(10)
    b.close()


def test_close_finishes_queued_requests_then_refuses():
    gate = Gate()
    b = Batcher(gate, max_cost=1, max_wait_s=0.0, max_queue=10)
    futures = [b.submit(i) for i in range(3)]
    gate.open.set()
    b.close()
    assert [f.result(0) for f in futures] == [0, 10, 20]
    with pytest.raises(onnxqa.OverloadedError):
        b.submit(5)


def test_batch_settings_are_checked():
    for bad in ({"max_windows": 0}, {"max_queue": 0}, {"max_wait_ms": -1}, {"max_windows": 1.5}):
        with pytest.raises(onnxqa.InputError):
            onnxqa.BatchSettings(**bad)
    assert onnxqa.BatchSettings().resolved("cpu").max_windows >= 1


# ---------------------------------------------------------------- the async API on the tiny model


def _spans(results):
    return [[(a.text, a.start, a.end) for a in answers] for answers in results]


@pytest.fixture(scope="module")
def questions(squad_v2):
    long_context = " ".join(q["context"] for q in squad_v2[:300:60])  # several windows
    pairs = [(q["question"], q["context"]) for q in squad_v2[:40]]
    return pairs + [("Who designed the bridge?", long_context), ("What did it open?", long_context)]


async def _concurrently(qa, pairs, **options):
    return await asyncio.gather(*(qa.answer_async(q, c, **options) for q, c in pairs))


def test_coalesced_answers_equal_answers_alone(tiny, questions):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32", batching=onnxqa.BatchSettings(max_windows=8))
    assert qa.batch_invariant
    calls: list[tuple[int, int]] = []
    qa.add_batch_listener(lambda requests, windows, seconds: calls.append((requests, windows)))
    for options in ({}, {"top_k": 3, "handle_impossible_answer": True}):
        alone = [asyncio.run(qa.answer_async(q, c, **options)) for q, c in questions]
        together = asyncio.run(_concurrently(qa, questions, **options))
        embedded = qa.batch(questions, **options)
        assert _spans(together) == _spans(alone) == _spans(embedded)
        for a, b in zip(together, alone):
            assert [x.score for x in a] == pytest.approx([y.score for y in b], rel=1e-5, abs=1e-9)
    assert max(requests for requests, _ in calls) > 1, "concurrent requests were never coalesced"
    qa.close()


def test_static_int8_requests_are_coalesced_and_equal_answers_alone(tiny, questions):
    qa = onnxqa.load(tiny, device="cpu", precision="int8", batching=onnxqa.BatchSettings(max_windows=8))
    assert qa.batch_invariant
    calls: list[int] = []
    qa.add_batch_listener(lambda requests, windows, seconds: calls.append(requests))
    alone = [asyncio.run(qa.answer_async(q, c)) for q, c in questions]
    together = asyncio.run(_concurrently(qa, questions))
    assert _spans(together) == _spans(alone) == _spans(qa.batch(questions))
    assert max(calls) > 1, "concurrent requests were never coalesced"
    qa.close()


def test_dynamic_int8_requests_are_never_coalesced_and_equal_the_sync_api(tiny_dynamic, questions):
    qa = onnxqa.load(tiny_dynamic, device="cpu", precision="int8")
    assert not qa.batch_invariant
    calls: list[int] = []
    qa.add_batch_listener(lambda requests, windows, seconds: calls.append(requests))
    together = asyncio.run(_concurrently(qa, questions[:12]))
    assert together == qa.batch(questions[:12])  # identical, scores included
    assert calls and set(calls) == {1}
    qa.close()


def test_async_errors_timeout_and_overload(tiny):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32", batching=onnxqa.BatchSettings(max_queue=1))
    with pytest.raises(onnxqa.InputError):
        asyncio.run(qa.answer_async(" ", CONTEXT))
    with pytest.raises(onnxqa.InputError):
        asyncio.run(qa.answer_async("Who?", CONTEXT, top_k=0))
    with pytest.raises(onnxqa.InputError):
        asyncio.run(qa.answer_async("Who?", CONTEXT, timeout=0))

    release, seen = threading.Event(), []
    original = qa._answer_coalesced

    def held(requests):
        seen.append(len(requests))
        assert release.wait(10)
        return original(requests)

    qa.close()
    qa._answer_coalesced = held  # type: ignore[method-assign]

    async def scenario():
        first = asyncio.ensure_future(qa.answer_async("Who designed it?", CONTEXT))
        while not seen:
            await asyncio.sleep(0.01)
        with pytest.raises(onnxqa.RequestTimeoutError):
            await qa.answer_async("Who?", CONTEXT, timeout=0.05)  # queued behind the held call
        assert qa.queue_depth == 0  # a request that timed out gives its place back at once
        second = asyncio.ensure_future(qa.answer_async("When did it open?", CONTEXT))
        while qa.queue_depth < 1:
            await asyncio.sleep(0.01)
        with pytest.raises(onnxqa.OverloadedError):
            await qa.answer_async("Who?", CONTEXT)  # max_queue=1: refused at once
        release.set()
        return await first, await second

    first, second = asyncio.run(scenario())
    assert first == qa("Who designed it?", CONTEXT) and second == qa("When did it open?", CONTEXT)
    assert seen == [1, 1], "the timed-out request must have been dropped"
    qa.close()


def test_submit_from_sync_code(tiny):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32")
    futures = [qa.submit([("Who designed it?", CONTEXT)]) for _ in range(4)]
    assert all(f.result(30) == qa.batch_with_null([("Who designed it?", CONTEXT)]) for f in futures)
    qa.close()
