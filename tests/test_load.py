"""Concurrency and memory under load: one shared QuestionAnswerer, many threads, many calls."""

from __future__ import annotations

import gc
import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

import onnxqa


@pytest.fixture(scope="module")
def mixed(squad_v2):
    rng = random.Random(0)
    picks = rng.sample(squad_v2, 1800)
    pairs = [(q["question"], q["context"]) for q in picks]
    long_context = " ".join(q["context"] for q in picks[:12])
    pairs += [(q["question"], long_context) for q in picks[:100]]  # multi-window
    pairs += [(q["question"], q["context"][: rng.randint(20, 200)]) for q in picks[100:200]]  # short
    rng.shuffle(pairs)
    assert len(pairs) == 2000
    return pairs


def test_eight_threads_give_the_sequential_answers(tiny, mixed):
    pairs = mixed[:600]  # multi-window and short ones among them
    qa = onnxqa.load(tiny, device="cpu", precision="int8")
    expected = [qa(q, c, top_k=2) for q, c in pairs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda pair: qa(pair[0], pair[1], top_k=2), pairs))
    assert got == expected
    # and threads sending batches
    chunks = [pairs[i : i + 50] for i in range(0, len(pairs), 50)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        batched = [a for part in pool.map(lambda ch: qa.batch(ch, top_k=2), chunks) for a in part]
    assert batched == expected


def _rss_mb() -> float:
    psutil = pytest.importorskip("psutil")
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def test_short_soak_memory_stays_flat(tiny, mixed):
    """A short version of benchmarks/soak.py: resident memory after warm-up must not keep growing."""
    qa = onnxqa.load(tiny, device="cpu", precision="int8")
    for q, c in mixed[:300]:  # warm-up: arenas and caches reach their size
        qa(q, c)
    gc.collect()
    start = _rss_mb()
    for i in range(3000):
        q, c = mixed[i % len(mixed)]
        qa(q, c)
    gc.collect()
    growth = _rss_mb() - start
    print(f"\nRSS growth over 3,000 calls after warm-up: {growth:+.1f} MiB")
    assert growth < 25
