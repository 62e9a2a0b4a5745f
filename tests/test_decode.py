"""Span decoding on hand-built logits: no model, exact indices and scores."""

from __future__ import annotations

import numpy as np
import pytest

from onnxqa.runtime._decode import best_spans, merge_answers


def test_best_span_exact_indices_and_score():
    allowed = np.array([True, False, False, True, True, True, False])  # CLS, question x2, context x3, SEP
    start = np.array([0, 9, 9, 0, 2, 0, 9], dtype=np.float32)
    end = np.array([0, 9, 9, 0, 0, 3, 9], dtype=np.float32)
    spans = best_spans(start, end, allowed, k=1, max_answer_len=15)
    assert (spans.starts.tolist(), spans.ends.tolist()) == ([4], [5])
    p_start = np.exp(start[allowed] - 2) / np.exp(start[allowed] - 2).sum()
    p_end = np.exp(end[allowed] - 3) / np.exp(end[allowed] - 3).sum()
    assert spans.scores[0] == pytest.approx(p_start[2] * p_end[3], rel=1e-6)
    assert spans.null_score == pytest.approx(p_start[0] * p_end[0], rel=1e-6)


def test_spans_respect_max_answer_len_and_order():
    allowed = np.ones(6, dtype=bool)
    start = np.array([0, 5, 0, 0, 0, 0], dtype=np.float32)
    end = np.array([0, 0, 0, 0, 0, 5], dtype=np.float32)
    spans = best_spans(start, end, allowed, k=40, max_answer_len=3)
    assert all(0 <= e - s < 3 for s, e in zip(spans.starts, spans.ends))
    assert np.all(np.diff(spans.scores) <= 0)
    assert len(spans.starts) == 15  # 6 starts x up to 3 lengths, minus the 3 that run off the end
    # CLS is zeroed after the softmax: spans starting there score 0, as in the pipeline
    assert all(score == 0 for s, score in zip(spans.starts, spans.scores) if s == 0)
    assert spans.starts[0] == 1  # the best start; (1, 5) is too long, so its end ties at 1..3


@pytest.mark.parametrize("seed", range(20))
def test_matches_pipeline_select_starts_ends(seed):
    from transformers.pipelines.question_answering import select_starts_ends

    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    start = rng.normal(0, 3, n).astype(np.float32)
    end = rng.normal(0, 3, n).astype(np.float32)
    p_mask = np.ones(n, dtype=np.int64)
    p_mask[int(n * 0.3) : n - 1] = 0  # context tokens
    p_mask[0] = 0  # CLS
    for top_k in (1, 5):
        ref_s, ref_e, ref_scores, ref_null = select_starts_ends(
            start[None], end[None], p_mask[None], np.ones((1, n), dtype=np.int64), 1000000, top_k, True, 15
        )
        ours = best_spans(start, end, p_mask == 0, k=top_k, max_answer_len=15)
        assert ours.starts.tolist() == ref_s.tolist()
        assert ours.ends.tolist() == ref_e.tolist()
        np.testing.assert_allclose(ours.scores, ref_scores, rtol=1e-6)
        assert ours.null_score == pytest.approx(ref_null, rel=1e-6)


def test_merge_adds_scores_of_equal_texts_case_insensitively():
    context = "Paris is in France. paris is big."
    answers = merge_answers(context, [(0, 5, 0.3), (20, 25, 0.25), (12, 18, 0.4)], null_score=0.1, top_k=3)
    assert [(a.text, a.start) for a in answers] == [("Paris", 0), ("France", 12), ("", 0)]
    assert answers[0].score == pytest.approx(0.55)
    assert answers[2].is_impossible


def test_scores_summed_over_windows_are_capped_but_ranked_by_sum():
    context = "Ada Ada Bob"
    answers = merge_answers(context, [(0, 3, 0.7), (8, 11, 0.9), (4, 7, 0.6)], null_score=None, top_k=2)
    assert [(a.text, a.score) for a in answers] == [("Ada", 1.0), ("Bob", 0.9)]
