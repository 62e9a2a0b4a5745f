"""onnxqa's answers equal the transformers v4 question-answering pipeline's on the same weights."""

from __future__ import annotations

import pytest

import onnxqa

from conftest import SEEDS
from parity_cases import OPTION_SETS, compare, parity_pairs


def _pipeline(checkpoint):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    return pipeline(
        "question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(checkpoint), device="cpu"
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_equal_pipeline(seed, store, squad_v2):
    """Every option set on the smallest seed; on the others (where the pipeline's time is the
    suite's largest cost) the defaults and the set that combines top_k, impossible answers and
    many small windows: the tokenizer and the graph are what differ between architectures."""
    out = store.exported(seed)
    pipe = _pipeline(store.checkpoint(seed))
    qa = onnxqa.load(out, device="cpu", precision="fp32")
    pairs = parity_pairs(squad_v2)
    failures = []
    for options in OPTION_SETS if seed == SEEDS[-1] else (OPTION_SETS[0], OPTION_SETS[-1]):
        ours = qa.batch(pairs, **options)
        for (question, context), answers in zip(pairs, ours):
            problem = compare(answers, pipe(question=question, context=context, **options))
            if problem:
                failures.append(f"{options} {question!r}: {problem}")
    assert not failures, "\n".join(failures)
    windows = qa._windower.windows(pairs[-6:-4], max_seq_len=384, doc_stride=128, max_question_len=64)
    assert len(windows) > 2, "the long contexts must need several windows"
