"""The families beyond the seeds — XLM-RoBERTa, DeBERTa-v3 / mDeBERTa-v3, ELECTRA, MobileBERT —
exported from checkpoints of their published architectures (``families.py``; 2 layers), answer as
the transformers pipeline does on English and on Chinese, Japanese, Arabic, Hindi, Russian, German,
French and Spanish text, with ``align_to_words`` on and off, over many windows, with impossible
answers and ``top_k``; their tokenizers' known traps; what int8 leaves in fp32 for each."""

from __future__ import annotations

import json
import warnings

import pytest

import onnxqa

from conftest import FAMILY_CHECKPOINTS
from multilingual import LONG_PAIRS, PAIRS
from parity_cases import compare, parity_pairs

# every checkpoint but xlm-roberta-spm, whose tokenizer is compared with xlm-roberta's instead
PARITY = [name for name in FAMILY_CHECKPOINTS if name != "xlm-roberta-spm"]
OPTION_SETS = [
    {},
    {"align_to_words": False},
    # many small windows (the long CJK context needs several), impossible answers, top_k
    {"top_k": 3, "handle_impossible_answer": True, "max_seq_len": 64, "doc_stride": 24},
    {"top_k": 3, "align_to_words": False, "max_seq_len": 64, "doc_stride": 24},
]


def _pipeline(checkpoint):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the byte-fallback conversion warning: tested on its own below
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return pipeline("question-answering", model=model, tokenizer=tokenizer, device="cpu")


@pytest.mark.parametrize("name", PARITY)
def test_answers_equal_pipeline_in_every_language(name, store, squad_v2):
    out = store.exported(name)
    pipe = _pipeline(store.checkpoint(name))
    qa = onnxqa.load(out, device="cpu", precision="fp32")
    pairs = parity_pairs(squad_v2, n_squad=8) + PAIRS + LONG_PAIRS
    failures, compared = [], 0
    for options in OPTION_SETS:
        for (question, context), answers in zip(pairs, qa.batch(pairs, **options)):
            compared += 1
            problem = compare(answers, pipe(question=question, context=context, **options))
            if problem:
                failures.append(f"{options} {question!r}: {problem}")
    assert not failures, f"{len(failures)} of {compared} differ:\n" + "\n".join(failures)
    windows = qa._windower.windows(LONG_PAIRS, max_seq_len=64, doc_stride=24, max_question_len=64)
    assert len(windows) > 2 * len(LONG_PAIRS), "the long CJK context must need several windows"
    # align_to_words means something here: on Chinese it grows a span to the whole sentence
    grown = qa(*PAIRS[0])[0].text
    own = qa(*PAIRS[0], align_to_words=False)[0].text
    assert own in grown


@pytest.mark.parametrize("name", PARITY)
def test_int8_is_validated_and_keeps_activation_products_in_fp32(name, store):
    manifest = json.loads((store.exported(name) / "onnxqa.json").read_text())
    assert manifest["variants"]["fp32"]["validation"]["status"] == "passed"  # against PyTorch
    assert manifest["variants"]["int8"]["validation"]["status"] == "passed"
    assert onnxqa.load(store.exported(name), device="cpu").precision == "int8"
    kept = manifest["variants"]["int8"]["quantization"]["kept_fp32"]
    fused = manifest["variants"]["fp32"]["fused_ops"]
    if manifest["architecture"]["model_type"] in ("deberta-v2", "mobilebert"):  # attention not fused
        assert "products of two activations" in kept and "Attention" not in fused
    else:  # BERT's graph: BERT's fusions
        assert fused.get("Attention") == 2 and manifest["graph_passes"]["unfuse_skip_layer_norm"] == 4, fused
        assert kept == "1 QA output head MatMul"


@pytest.mark.parametrize("name", ["deberta-v3", "xlm-roberta"])
def test_deberta_and_xlm_r_take_no_token_type_ids(name, store):
    import onnx

    out = store.exported(name)
    manifest = json.loads((out / "onnxqa.json").read_text())
    assert manifest["architecture"]["uses_token_type_ids"] is False
    for file in ("model.fp32.onnx", "model.int8.onnx"):
        inputs = [i.name for i in onnx.load(out / file, load_external_data=False).graph.input]
        assert inputs == ["input_ids", "attention_mask"]


def test_xlm_roberta_positions_start_after_the_padding_index(store):
    arch = json.loads((store.exported("xlm-roberta") / "onnxqa.json").read_text())["architecture"]
    assert arch["max_positions"] == 514 - 2  # max_position_embeddings - (pad_token_id + 1)


def test_a_lone_metaspace_token_overlaps_the_next_one(store):
    """The trap the parity tests above cover: XLM-R's tokenizer emits a lone "▁" before CJK text
    whose character offsets are those of the following token."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(store.exported("xlm-roberta") / "tokenizer.json"))
    enc = tok.encode(*PAIRS[0])
    lone = [i for i, t in enumerate(enc.tokens[:-1]) if t == "▁" and enc.offsets[i] == enc.offsets[i + 1]]
    assert lone, list(zip(enc.tokens, enc.offsets))[:16]


def test_a_sentencepiece_only_checkpoint_gets_the_converters_tokenizer(store, squad_v2):
    """xlm-roberta-spm ships only sentencepiece.bpe.model: the export writes the tokenizer.json of
    transformers' converter, which tokenizes as the one saved beside the other checkpoint."""
    from tokenizers import Tokenizer

    spm = store.family("xlm-roberta", with_json=False)
    assert not (spm / "tokenizer.json").exists() and (spm / "sentencepiece.bpe.model").exists()
    out = store.exported("xlm-roberta-spm")
    ours = Tokenizer.from_file(str(out / "tokenizer.json"))
    theirs = Tokenizer.from_file(str(store.family("xlm-roberta") / "tokenizer.json"))
    for question, context in PAIRS + [(q["question"], q["context"]) for q in squad_v2[:20]]:
        a, b = ours.encode(question, context), theirs.encode(question, context)
        assert (a.ids, a.offsets) == (b.ids, b.offsets)
    assert onnxqa.load(out, device="cpu")(*PAIRS[3])


def test_byte_fallback_is_warned_and_unknown_characters_match_the_pipeline(store):
    """DeBERTa-v3's SentencePiece model falls back to bytes for characters outside its vocabulary;
    the converted fast tokenizer (the pipeline's too) gives the unknown token instead. The export
    says so, and the answers still equal the pipeline's."""
    from onnxqa.export._families import family_of
    from onnxqa.export._source import _load_tokenizer

    checkpoint = store.family("mdeberta-v3", with_json=False)
    with pytest.warns(UserWarning, match="byte fallback"):
        tokenizer = _load_tokenizer(checkpoint, pass_flag=True, family=family_of("deberta-v2"))
    assert "[UNK]" in tokenizer.convert_ids_to_tokens(tokenizer("𝄞")["input_ids"])
    pipe = _pipeline(checkpoint)
    qa = onnxqa.load(store.exported("mdeberta-v3-spm"), device="cpu", precision="fp32")
    question, context = "Which symbol opens the score?", "The score 𝄞 opens with a G clef ♫, then Ωmega plays."
    for options in OPTION_SETS[:2]:
        assert compare(qa(question, context, **options), pipe(question=question, context=context, **options)) is None


def test_unsupported_model_types_get_an_error_listing_the_supported(tmp_path):
    from onnxqa.export import ExportConfig, export

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"model_type": "longformer"}))
    with pytest.raises(onnxqa.ExportError) as info:
        export(str(tmp_path / "ckpt"), tmp_path / "out", ExportConfig(progress=False))
    message = str(info.value)
    assert "'longformer' is not supported" in message
    for model_type in ("bert", "roberta", "distilbert", "xlm-roberta", "deberta-v2", "electra", "mobilebert"):
        assert f"{model_type} (" in message
    assert not (tmp_path / "out").exists()


def test_served_over_http_in_other_languages(store):
    """`onnxqa serve` on an XLM-R export: questions in Arabic, Chinese, Hindi and Russian, one text
    and across documents, answered as the embedded API answers them (offsets in code points)."""
    import httpx

    pytest.importorskip("fastapi")
    from serving import running_server

    out = store.exported("xlm-roberta")
    qa = onnxqa.load(out, device="cpu")
    picked = [PAIRS[0], PAIRS[3], PAIRS[4], PAIRS[5]]
    with running_server(out) as base:
        for question, context in picked:
            r = httpx.post(f"{base}/v1/answer", json={"question": question, "context": context, "top_k": 2}, timeout=30)
            assert r.status_code == 200, r.text
            answers = r.json()["answers"]
            assert [(a["text"], a["start"], a["end"]) for a in answers] == [
                (a.text, a.start, a.end) for a in qa(question, context, top_k=2)
            ]
            assert all(context[a["start"] : a["end"]] == a["text"] for a in answers)
        documents = [c for _, c in PAIRS]
        question = PAIRS[3][0]
        r = httpx.post(f"{base}/v1/answer/documents", json={"question": question, "documents": documents}, timeout=30)
        assert r.status_code == 200, r.text
        embedded = qa.answer_documents(question, documents)
        assert [(a["document"], a["start"], a["end"]) for a in r.json()["answers"]] == [
            (a.document, a.start, a.end) for a in embedded
        ]


def test_onnxqa_batch_answers_multilingual_rows(store, tmp_path):
    """`onnxqa batch` on the mDeBERTa export (SentencePiece-only checkpoint): each row's best
    answer is the embedded API's."""
    import subprocess
    import sys

    out = store.exported("mdeberta-v3-spm")
    rows = [{"id": f"q{i}", "question": q, "context": c} for i, (q, c) in enumerate(PAIRS)]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    cmd = [sys.executable, "-m", "onnxqa.cli", "batch", str(out), str(src), str(dst), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    answered = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    qa = onnxqa.load(out, device="cpu")
    for row, got in zip(rows, answered):
        best = qa(row["question"], row["context"])[0]
        assert (got["id"], got["answer"], got["start"], got["end"]) == (row["id"], best.text, best.start, best.end)


def test_deberta_position_projections_are_computed_at_export(store):
    """The relative-position embeddings' layer norm and each layer's query / key projections of
    them depend on weights alone: folded into weights at export, before the fp32 check."""
    import onnx

    out = store.exported("deberta-v3")
    manifest = json.loads((out / "onnxqa.json").read_text())
    assert manifest["graph_passes"]["fold_constant_subgraphs"] > 0
    from onnxqa.export._passes import _constant_nodes

    graph = onnx.load(out / "model.fp32.onnx", load_external_data=False).graph
    assert _constant_nodes(graph)[0] == []  # nothing left that depends on weights alone
    assert manifest["variants"]["fp32"]["validation"]["status"] == "passed"
