"""Answers across many documents: the decode on hand-built logits (exact indices and scores, no model),
checked against Haystack's own reader functions, and ``answer_documents`` on a small model."""

from __future__ import annotations

import math

import numpy as np
import pytest

import onnxqa
from onnxqa.runtime._documents import (
    Document,
    DocumentAnswer,
    ReaderOptions,
    deduplicate_by_overlap,
    select_answers,
    span_candidates,
)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_span_candidates_exact_indices_and_scores():
    # tokens: CLS, question, SEP, context x4, SEP; only the context may start or end a span
    allowed = np.array([False, False, False, True, True, True, True, False])
    start = np.array([50, 40, 0, 1, 4, 2, 0, 30], dtype=np.float32)
    end = np.array([50, 40, 0, 0, 1, 3, 2, 30], dtype=np.float32)
    spans = span_candidates(start, end, allowed, k=3, calibration_factor=0.1)
    assert list(zip(spans.starts.tolist(), spans.ends.tolist())) == [(4, 5), (4, 6), (5, 5)]
    np.testing.assert_allclose(spans.scores, [_sigmoid(0.7), _sigmoid(0.6), _sigmoid(0.5)], rtol=1e-6)
    assert spans.scores.dtype == np.float32


def test_span_candidates_no_length_limit_and_never_backwards():
    allowed = np.ones(6, dtype=bool)
    start = np.array([9, 0, 0, 0, 0, 0], dtype=np.float32)
    end = np.array([0, 0, 0, 0, 0, 8], dtype=np.float32)
    spans = span_candidates(start, end, allowed, k=100, calibration_factor=1.0)
    assert (int(spans.starts[0]), int(spans.ends[0])) == (0, 5)  # the whole window
    assert len(spans.starts) == 21  # 6 * 7 / 2 spans with start <= end, no more
    assert np.all(spans.starts <= spans.ends)
    assert np.all(np.diff(spans.scores) <= 0)


def test_span_candidates_ties_in_position_order_and_zero_scores_dropped():
    allowed = np.array([False, True, True, True])
    start = np.array([0, 1, 1, -2000], dtype=np.float32)  # sigmoid(0.1 * -2000) is 0 in float32
    end = np.array([0, 1, 1, 1], dtype=np.float32)
    spans = span_candidates(start, end, allowed, k=10, calibration_factor=0.1)
    assert list(zip(spans.starts.tolist(), spans.ends.tolist())) == [(1, 1), (1, 2), (1, 3), (2, 2), (2, 3)]
    empty = span_candidates(start, end, np.zeros(4, dtype=bool), k=10, calibration_factor=0.1)
    assert len(empty.starts) == 0


def _haystack_reader_class():
    pytest.importorskip("haystack")
    pytest.importorskip("torch")
    from haystack.components.readers.extractive import ExtractiveReader

    return ExtractiveReader


@pytest.mark.parametrize("seed", range(12))
def test_span_candidates_match_haystack_postprocess(seed):
    torch = pytest.importorskip("torch")
    reader_cls = _haystack_reader_class()
    reader = reader_cls.__new__(reader_cls)  # only calibration_factor is read: no model
    reader.calibration_factor = 0.1

    class Offsets:  # token i spans characters [10 i, 10 i + 5)
        def token_to_chars(self, i):
            return (10 * int(i), 10 * int(i) + 5)

    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(6, 40)), int(rng.integers(1, 30))
    start = rng.normal(0, 8, (2, n)).astype(np.float32)
    end = rng.normal(0, 8, (2, n)).astype(np.float32)
    sequence_ids = np.full((2, n), 1)
    sequence_ids[:, : n // 4 + 1] = 0
    sequence_ids[:, n // 4] = -1
    attention = np.ones((2, n), dtype=np.int64)
    attention[1, n - n // 3 :] = 0  # the second window is padded
    sequence_ids[1, n - n // 3 :] = -1
    ref_starts, ref_ends, ref_scores = reader._postprocess(
        start=torch.from_numpy(start),
        end=torch.from_numpy(end),
        sequence_ids=torch.from_numpy(sequence_ids),
        attention_mask=torch.from_numpy(attention),
        answers_per_seq=k,
        encodings=[Offsets(), Offsets()],
    )
    for w in range(2):
        allowed = (sequence_ids[w] == 1) & (attention[w] == 1)
        ours = span_candidates(start[w], end[w], allowed, k=k, calibration_factor=0.1)
        assert [10 * int(s) for s in ours.starts] == ref_starts[w]
        assert [10 * int(e) + 5 for e in ours.ends] == ref_ends[w]
        np.testing.assert_allclose(ours.scores, ref_scores[w].numpy(), rtol=1e-6)


@pytest.mark.parametrize("seed", range(30))
def test_deduplicate_matches_haystack(seed):
    reader_cls = _haystack_reader_class()
    from haystack import Document as HaystackDocument
    from haystack.dataclasses import ExtractedAnswer

    reader = reader_cls.__new__(reader_cls)
    rng = np.random.default_rng(seed)
    docs = [HaystackDocument(content=f"document {i}") for i in range(3)]
    spans = []
    for _ in range(int(rng.integers(1, 40))):
        start = int(rng.integers(0, 60))
        spans.append((int(rng.integers(0, 3)), start, start + int(rng.integers(1, 15))))
    answers = [
        ExtractedAnswer(query="", score=0.5, data="x", document=docs[d], document_offset=ExtractedAnswer.Span(s, e))
        for d, s, e in spans
    ]
    for threshold in (0.01, 0.3, 0.99):
        kept = reader.deduplicate_by_overlap(answers, overlap_threshold=threshold)
        ref = [(docs.index(a.document), a.document_offset.start, a.document_offset.end) for a in kept]
        ours = deduplicate_by_overlap([(docs[d].id, s, e) for d, s, e in spans], threshold)
        assert [spans[i] for i in ours] == ref
        for limit in (1, 3):
            assert deduplicate_by_overlap([(docs[d].id, s, e) for d, s, e in spans], threshold, limit) == ours[:limit]


def test_deduplicate_examples_from_the_docs():
    # "the river in Maine" and "the river": the second lies inside the first (overlap 1.0)
    text = "I want to go to the river in Maine."
    a, b = (text.index("the river"), text.index(".")), (text.index("the river"), text.index(" in Maine"))
    assert deduplicate_by_overlap([(0, *a), (0, *b)], 0.99) == [0]
    # "the river in" and "in Maine" overlap by 2 characters: 2 / 12 and 2 / 8, at most 25%
    c, d = (text.index("the river"), text.index(" Maine")), (text.index("in Maine"), text.index("."))
    assert deduplicate_by_overlap([(0, *c), (0, *d)], 0.24) == [0]
    assert deduplicate_by_overlap([(0, *c), (0, *d)], 0.25) == [0, 1]
    assert deduplicate_by_overlap([(0, *c), (1, *d)], 0.0) == [0, 1]  # other document
    assert deduplicate_by_overlap([(0, *c), (0, *d)], None) == [0, 1]


def test_select_answers_no_answer_page_numbers_threshold():
    docs = [Document("ab\fcd\fef", meta={"page_number": 4}), Document("xyz", id="x")]
    candidates = [(0, 0, 2, 0.5), (0, 6, 8, 0.9), (1, 0, 3, 0.7), (0, 3, 5, 0.2)]
    answers = select_answers(docs, candidates, ReaderOptions(top_k=3))
    assert [(a.text, a.document, a.page_number) for a in answers] == [
        ("ef", 0, 6),
        ("xyz", 1, None),
        ("ab", 0, 4),
        ("", None, None),
    ]
    assert answers[1].id == "x" and answers[-1].is_impossible
    assert answers[-1].score == pytest.approx(0.1 * 0.3 * 0.5)
    assert answers[-1] == DocumentAnswer(text="", score=answers[-1].score, start=0, end=0, document=None)

    # zero is a value here, not "the default": no answer at all, the no-answer entry scores 1
    assert [a.score for a in select_answers(docs, candidates, ReaderOptions(top_k=0))] == [1.0]
    kept = select_answers(docs, candidates, ReaderOptions(top_k=3, score_threshold=0.6, no_answer=False))
    assert [a.text for a in kept] == ["ef", "xyz"]
    with_null = select_answers(docs, candidates, ReaderOptions(top_k=1, score_threshold=0.09))
    assert [a.text for a in with_null] == ["ef", ""]  # the no-answer entry: 1 - 0.9


@pytest.mark.parametrize(
    "options",
    [
        {"top_k": -1},
        {"stride": 384},
        {"answers_per_seq": 0},
        {"max_seq_length": 1.5},
        {"no_answer": 1},
        {"score_threshold": float("nan")},
        {"calibration_factor": None},
        {"batch_size": 0},
    ],
)
def test_reader_options_are_checked(options):
    with pytest.raises(onnxqa.InputError):
        ReaderOptions(**options)


def test_answer_documents_on_a_small_model(tiny):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32")
    docs = [
        "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931.",
        onnxqa.Document(None, id="empty"),
        onnxqa.Document("Page one.\fPage two: the bridge is painted red. " * 40, id="long", meta={"page_number": 1}),
        onnxqa.Document("Le café « Ça va » est situé près de l'église Saint-Étienne."),
    ]
    answers = qa.answer_documents("Who designed the bridge?", docs, top_k=5)
    spans = [a for a in answers if not a.is_impossible]
    assert len(answers) == len(spans) + 1 and len(spans) == 5
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    for a in spans:
        doc = docs[a.document]
        content = doc if isinstance(doc, str) else doc.content
        assert a.document != 1 and content[a.start : a.end] == a.text
        if a.document == 2:
            assert a.id == "long" and a.page_number == 1 + content[: a.start].count("\f")
    null = next(a for a in answers if a.is_impossible)
    assert null.score == pytest.approx(math.prod(1 - a.score for a in spans))

    windows = qa._windower.document_windows("Who designed the bridge?", [docs[2].content], max_seq_len=384, stride=128)
    assert len(windows) >= 2, "the long document must need several windows"

    # BERT: the real type ids change the logits; Haystack's reader feeds none (zeros)
    real = qa.answer_documents("Who designed the bridge?", docs, token_type_ids=True)
    assert [a.score for a in real] != [a.score for a in answers[: len(real)]]
    assert qa.answer_documents("Who?", [onnxqa.Document(None)]) == [
        DocumentAnswer(text="", score=1.0, start=0, end=0, document=None)
    ]
    with pytest.raises(onnxqa.InputError):
        qa.answer_documents("Who?", "a single string")
    with pytest.raises(onnxqa.InputError):
        qa.answer_documents("Who?", docs, max_seq_length=100_000)
    with pytest.raises(onnxqa.InputError):
        qa.answer_documents("Who?", docs, unknown=1)


def test_batch_size_does_not_change_fp32_answers(tiny):
    qa = onnxqa.load(tiny, device="cpu", precision="fp32")
    docs = ["The bridge opened in 1931 and was designed by Margaret Ellison. " * k for k in (1, 9, 30)]
    one = qa.answer_documents("Who designed it?", docs)
    many = qa.answer_documents("Who designed it?", docs, batch_size=8)
    assert [(a.document, a.start, a.end) for a in one] == [(a.document, a.start, a.end) for a in many]
    np.testing.assert_allclose([a.score for a in one], [a.score for a in many], atol=1e-5)
