"""Bad input gets a typed error or a defined answer, never a crash or an offset outside the text."""

from __future__ import annotations

import pytest

import onnxqa
from onnxqa import InputError, ProviderError

CONTEXT = "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931."


@pytest.fixture(scope="module")
def qa(tiny):
    return onnxqa.load(tiny, device="cpu", precision="fp32")


def check(context: str, answers: list, top_k: int = 1) -> None:
    assert 1 <= len(answers) <= top_k
    for a in answers:
        assert 0 <= a.start <= a.end <= len(context)
        assert context[a.start : a.end] == a.text
        assert 0.0 <= a.score <= 1.0


@pytest.mark.parametrize(
    "question, context",
    [
        ("", CONTEXT),
        ("   \n\t", CONTEXT),
        ("Who?", ""),
        ("Who?", " \u3000 \n"),
        (None, CONTEXT),
        ("Who?", None),
        (b"Who?", CONTEXT),
        ("Who?", 42),
        (3.5, CONTEXT),
        (["Who?"], CONTEXT),
    ],
)
def test_empty_or_non_string_input(qa, question, context):
    with pytest.raises(InputError):
        qa(question, context)


def test_malformed_batch(qa):
    with pytest.raises(InputError):
        qa.batch([("Who?", CONTEXT), "not a pair"])
    with pytest.raises(InputError):
        qa.batch([("Who?", CONTEXT, "extra")])
    assert qa.batch([]) == []


def test_question_too_long_for_the_window(qa):
    question = "why " * 200
    # cut to max_question_len tokens by default: answered
    check(CONTEXT, qa(question, CONTEXT))
    # but a question that cannot leave room for the context is a clear error
    with pytest.raises(InputError, match="question takes"):
        qa(question, CONTEXT, max_question_len=200, max_seq_len=128, doc_stride=32)


@pytest.mark.parametrize(
    "text",
    [
        "Built in 1931 by Ada \ud800 Ellison, the bridge \udfff spans the river.",  # lone surrogates
        "Built in 1931 by Ada\x00 Ellison,\x07 the\x1b bridge spans the river.",  # NUL and controls
        "בנוי בשנת 1931 על ידי עדה אליסון, הגשר חוצה את הנהר. built by Ada",  # right-to-left
        "Bui\u0301lt i\u0308n 1931 by A\u0327da Ellison; the bridge spans the river.",  # combining marks
        "The family 👨\u200d👩\u200d👧\u200d👦 and the flag 🏳️\u200d🌈 crossed the bridge in 1931.",  # ZWJ emoji
        "東京タワーは東京都港区芝公園にある電波塔です高さは333メートルで1958年に完成しました",  # CJK, no spaces
        "The ﬁrst ﬂight over the ﬁeld was in 1931; Straße ǅemal İstanbul ẞ.",  # ligatures, length changes
        "ÀÉÎÕÜ àéîõü ÇÑ çñ — the bridge was opened by Ms. Ñúñez in 1931.",  # accents under uncased vocab
        "\u200b\u200b Zero\u200bwidth\u200b spaces around the 1931 bridge \ufeff.",
    ],
)
def test_unusual_text_gives_valid_offsets(qa, text):
    for top_k in (1, 3):
        check(text, qa("Who built the bridge in 1931?", text, top_k=top_k), top_k)
        answers = qa("Who built it?", text, top_k=top_k, handle_impossible_answer=True)
        assert 1 <= len(answers) <= top_k


@pytest.mark.parametrize(
    "options",
    [
        {"doc_stride": 384, "max_seq_len": 384},
        {"doc_stride": 500},
        {"max_seq_len": 10_000},
        {"top_k": 0},
        {"max_answer_len": 0},
        {"batch_size": -1},
        {"no_such_option": 1},
        {"top_k": "3"},
    ],
)
def test_bad_options(qa, options):
    with pytest.raises(InputError):
        qa("Who designed it?", CONTEXT, **options)


def test_bad_load_arguments(tiny):
    with pytest.raises(ProviderError, match="unknown device"):
        onnxqa.load(tiny, device="tpu")
    with pytest.raises(InputError, match="unknown precision"):
        onnxqa.load(tiny, device="cpu", precision="int4")
    with pytest.raises(ProviderError, match="not suited"):
        onnxqa.load(tiny, device="cpu", precision="fp16")
    with pytest.raises(InputError):
        onnxqa.load(tiny, device="cpu", threads=0)
    with pytest.raises(InputError):
        onnxqa.load(tiny, device="cpu", max_seq_len=4096)


def test_cuda_never_falls_back_silently(tiny):
    from onnxqa.runtime._session import cuda_available

    if cuda_available():
        pytest.skip("CUDA is available here; the GPU tests cover it")
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        onnxqa.load(tiny, device="cuda")
    assert onnxqa.load(tiny, device="auto").device == "cpu"


def test_one_megabyte_context(qa):
    sentence = "The Harlow Bridge, designed by Margaret Ellison, opened in 1931 and spans 412 metres. "
    context = sentence * (1_000_000 // len(sentence))
    answers = qa("Who designed the bridge?", context, top_k=3)
    check(context, answers, 3)


@pytest.mark.slow
def test_ten_megabyte_context(qa):
    """Slow: run with -m slow; its time and peak memory are reported by benchmarks/soak.py --huge."""
    sentence = "The Harlow Bridge, designed by Margaret Ellison, opened in 1931 and spans 412 metres. "
    context = sentence * (10_000_000 // len(sentence))
    check(context, qa("Who designed the bridge?", context, top_k=2), 2)
