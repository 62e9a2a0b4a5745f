"""benchmarks/paired.py without models: the engines' order is drawn for each question, each
call is timed on its own, and the ratios (with their bootstrap interval) read the right way round."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import bench_module


@pytest.fixture(scope="module")
def paired():
    return bench_module("paired")


def test_every_engine_answers_each_question_in_turn_each_call_timed(paired, monkeypatch):
    monkeypatch.setattr(paired, "PAUSE_S", 0.0)
    calls: list[tuple[str, str]] = []

    def engine(name: str, delay: float) -> SimpleNamespace:
        def one(question: str, context: str) -> str:
            calls.append((name, question))
            time.sleep(delay)
            return ""

        return SimpleNamespace(one=one)

    engines = {"slow": engine("slow", 0.2), "fast": engine("fast", 0.002), "mid": engine("mid", 0.01)}
    pairs = [(f"q{i}", "c") for i in range(8)]
    seconds = paired.timed_questions(engines, pairs)
    # every question by every engine before the next question, in an order drawn for each
    assert [q for _, q in calls] == [q for q, _ in pairs for _ in range(3)]
    orders = [tuple(name for name, _ in calls[3 * i : 3 * i + 3]) for i in range(8)]
    assert all(sorted(o) == sorted(engines) for o in orders) and len(set(orders)) > 1
    assert all(len(times) == 8 for times in seconds.values())
    assert min(seconds["slow"]) > max(seconds["fast"])  # a call's own time, not its neighbours'


def test_several_questions_a_call_go_to_many_in_turns(paired, monkeypatch):
    monkeypatch.setattr(paired, "PAUSE_S", 0.0)
    calls: list[tuple[str, tuple[str, ...]]] = []

    def engine(name: str) -> SimpleNamespace:
        def one(question: str, context: str) -> str:
            raise AssertionError("one question a call asked for several")

        def many(pairs: list[tuple[str, str]]) -> list[str]:
            calls.append((name, tuple(q for q, _ in pairs)))
            return [""] * len(pairs)

        return SimpleNamespace(one=one, many=many)

    pairs = [(f"q{i}", "c") for i in range(10)]
    seconds = paired.timed_questions({"a": engine("a"), "b": engine("b")}, pairs, per_call=4)
    # calls of 4, 4 and the 2 left, each by both engines before the next
    assert [q for _, q in calls] == [("q0", "q1", "q2", "q3")] * 2 + [("q4", "q5", "q6", "q7")] * 2 + [("q8", "q9")] * 2
    assert {name for name, _ in calls[:2]} == {"a", "b"}
    assert {name: len(times) for name, times in seconds.items()} == {"a": 3, "b": 3}


def test_ratio_reads_as_times_faster(paired):
    rng = np.random.default_rng(0)
    same = paired.ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0], rng)  # fewer questions than a block
    assert same == pytest.approx({"total": 2.0, "low": 2.0, "high": 2.0, "median_per_question": 2.0})
    reference = list(rng.uniform(0.1, 0.3, size=200))
    engine = [t / rng.uniform(1.0, 1.4) for t in reference]  # 1.0-1.4x faster, question by question
    r = paired.ratio(reference, engine, rng)
    assert 1.0 < r["low"] < r["total"] < r["high"] < 1.4
    # 20 questions on which the reference is 3x slower and the engine only 1.2x: a wider interval
    slow = [t * (3 if 100 <= i < 120 else 1) for i, t in enumerate(reference)]
    drifted = paired.ratio(slow, [t * (1.2 if 100 <= i < 120 else 1) for i, t in enumerate(engine)], rng)
    assert drifted["high"] - drifted["low"] > r["high"] - r["low"]
    assert paired.ratio(engine, reference, rng)["total"] == pytest.approx(1 / r["total"])


def test_the_table_has_a_column_for_each_reference_measured(paired, tmp_path):
    vs = {"total": 1.25, "low": 1.2, "high": 1.3, "median_per_question": 1.24}
    engines = {
        "optimum-int8": {"questions_per_s": 40.0, "vs": {"openvino-int8-alone": vs}},
        "openvino-int8-alone": {"questions_per_s": 50.0, "vs": {"optimum-int8": vs}},
        "onnxqa-tuned": {"questions_per_s": 52.0, "vs": {"optimum-int8": vs, "openvino-int8-alone": vs}},
    }
    result = {
        "machine": {"cpu": "a CPU", "logical_cores": 2},
        "date": "today",
        "settings": {"questions": 3},
        "models": {"m": {"engines": engines, "skipped": [], "tuned": "precision int8"}},
    }
    text = paired.report(result, tmp_path / "r.json")
    assert "| model | engine | questions/s | × optimum int8 | × openvino-int8-alone |" in text
    assert "× pipeline" not in text
    assert "| m | onnxqa-tuned | 52.00 | **1.25** (1.20–1.30) [1.24] | **1.25** (1.20–1.30) [1.24] |" in text
    assert "| m | openvino-int8-alone | 50.00 | **1.25** (1.20–1.30) [1.24] | 1.00 |" in text
    assert "one question per call" in text
    result["settings"]["per_call"] = 5
    assert "5 consecutive questions per call" in paired.report(result, tmp_path / "r.json")
