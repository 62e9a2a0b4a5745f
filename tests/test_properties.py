"""Invariants of every answer, over random text (hypothesis), on the torch-free ``fake_model``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onnxqa

WORDS = [
    "bridge",
    "river",
    "1931",
    "Ellison",
    "designed",
    "the",
    "a",
    "of",
    "København",
    "naïve",
    "東京",
    "😀",
    "👩\u200d🔬",
    "e\u0301",
    "ﬁ",
    "Straße",
    "—",
    ",",
    ".",
    "?",
    "(",
    ")",
    "\u200b",
    "\t",
    "\n",
]
text = (
    st.lists(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=12)), min_size=1, max_size=120)
    .map(" ".join)
    .filter(lambda s: s.strip())
)
question = st.lists(st.sampled_from(WORDS[:10]), min_size=1, max_size=8).map(" ".join)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def qa(fake_model):
    return onnxqa.load(fake_model, device="cpu", precision="fp32")


def spans(answers):
    return [(a.text, a.start, a.end) for a in answers]


@SETTINGS
@given(
    q=question,
    context=text,
    top_k=st.integers(1, 5),
    impossible=st.booleans(),
    align=st.booleans(),
    max_seq_len=st.sampled_from([48, 96, 384]),
)
def test_answer_invariants(qa, q, context, top_k, impossible, align, max_seq_len):
    answers = qa(
        q,
        context,
        top_k=top_k,
        handle_impossible_answer=impossible,
        align_to_words=align,
        max_seq_len=max_seq_len,
        doc_stride=min(16, max_seq_len // 4),
        max_question_len=16,
    )
    assert len(answers) <= top_k
    if impossible:
        assert len(answers) >= 1
    for a in answers:
        assert 0 <= a.start <= a.end <= len(context)
        assert context[a.start : a.end] == a.text
        assert 0.0 <= a.score <= 1.0 + 1e-6
    scores = [a.score for a in answers]
    assert scores == sorted(scores, reverse=True)


@SETTINGS
@given(pairs=st.lists(st.tuples(question, text), min_size=2, max_size=12), data=st.data())
def test_alone_or_in_batch_and_any_batch_size(qa, pairs, data):
    top_k = data.draw(st.integers(1, 3))
    alone = [spans(qa(q, c, top_k=top_k, max_seq_len=64, doc_stride=16)) for q, c in pairs]
    for batch_size in (1, 64):
        batched = qa.batch(pairs, top_k=top_k, max_seq_len=64, doc_stride=16, batch_size=batch_size)
        assert [spans(a) for a in batched] == alone


def test_batching_really_batches(qa, record_calls):
    """The batch-invariance property above is not vacuous: batch_size=64 puts many windows in one call."""
    pairs = [("Who designed it?", f"The bridge number {i} was designed by Ada.") for i in range(20)]
    with record_calls(qa) as shapes:
        qa.batch(pairs, batch_size=64)
    assert shapes and max(s[0] for s in shapes) == 20


def test_int8_runs_each_window_alone_by_default(fake_model_dynamic, record_calls):
    """Dynamic int8 computes activation scales per call, so its default is one window per call: a
    window's answer never depends on its neighbours."""
    qa8 = onnxqa.load(fake_model_dynamic, device="cpu", precision="int8")
    pairs = [("Who designed it?", f"The bridge number {i} was designed by Ada.") for i in range(12)]
    with record_calls(qa8) as shapes:
        batched = qa8.batch(pairs)
    assert {s[0] for s in shapes} == {1}
    assert batched == [qa8(q, c) for q, c in pairs]
