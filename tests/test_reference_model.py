"""The real trained reference model: fp32 answers equal the pipeline's on 300 held-out questions."""

from __future__ import annotations

import json

import onnxqa

from conftest import REFERENCE, shared_path
from parity_cases import compare

N_QUESTIONS = 300


def _questions():
    data = json.loads(shared_path("data", "squad", "dev-v2.0.reference-heldout.json").read_text(encoding="utf-8"))
    qs = [(qa["question"], p["context"]) for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]
    return qs[:N_QUESTIONS]


def test_reference_fp32_equals_pipeline_and_int8_agreement(store, capsys):
    from transformers import pipeline

    checkpoint = store.checkpoint(REFERENCE)
    out = store.exported(REFERENCE)
    pairs = _questions()
    assert len(pairs) == N_QUESTIONS
    pipe = pipeline("question-answering", model=str(checkpoint), tokenizer=str(checkpoint), device="cpu")
    fp32 = onnxqa.load(out, device="cpu", precision="fp32").batch(pairs, handle_impossible_answer=True)
    failures = []
    for (question, context), ours in zip(pairs, fp32):
        problem = compare(ours, pipe(question=question, context=context, handle_impossible_answer=True))
        if problem:
            failures.append(f"{question!r}: {problem}")
    assert not failures, f"{len(failures)}/{N_QUESTIONS} differ:\n" + "\n".join(failures[:20])

    int8 = onnxqa.load(out, device="cpu", precision="int8").batch(pairs, handle_impossible_answer=True)
    same = sum((a[0].start, a[0].end) == (b[0].start, b[0].end) for a, b in zip(fp32, int8))
    with capsys.disabled():
        print(
            f"\nreference model: int8 answers equal fp32 on {same}/{N_QUESTIONS} held-out questions "
            f"({100 * same / N_QUESTIONS:.1f}%)"
        )
    assert same > N_QUESTIONS // 2  # a broken quantization agrees on almost nothing
