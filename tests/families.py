"""Checkpoints of the families beyond the seeds (XLM-RoBERTa, DeBERTa-v2/v3, ELECTRA, MobileBERT),
built here because the hub is unreachable: each published config's exact architecture with seeded
random weights (QA head re-drawn, as for the seeds) and a real tokenizer of the family's kind.

- ELECTRA and MobileBERT use bert-base-uncased's WordPiece vocabulary, which their checkpoints
  share (the tinybert seed's ``vocab.txt``).
- XLM-RoBERTa and DeBERTa-v3 vocabularies are not available here: a small SentencePiece model is
  trained on SQuAD contexts and the multilingual sentences of ``multilingual.py``, with the
  family's special pieces, and turned into the family's tokenizer by transformers' own classes
  (``XLMRobertaTokenizer``, ``DebertaV2Tokenizer``), as transformers' tests do. A checkpoint is
  written either with the ``tokenizer.json`` of transformers' converter beside the SentencePiece
  file, or with the SentencePiece file only (as several hub repositories ship them).

``vocab_size`` is the tokenizer's size unless ``full_vocab`` (the published size, for speed runs:
the embedding is as large as the real model's; the extra rows are never looked up).
Used by the tests and by ``benchmarks/compare.py``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["CONFIGS", "FAMILIES", "build_checkpoint", "sentencepiece_model"]

_BERT_LIKE = {
    "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "initializer_range": 0.02,
}

# the published configs (architecture fields only; dropout irrelevant in eval)
CONFIGS: dict[str, dict[str, Any]] = {
    "xlm-roberta-base": {
        **_BERT_LIKE,
        "architectures": ["XLMRobertaForQuestionAnswering"],
        "model_type": "xlm-roberta",
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 514,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "position_embedding_type": "absolute",
        "type_vocab_size": 1,
        "vocab_size": 250002,
    },
    "deberta-v3-base": {
        **_BERT_LIKE,
        "architectures": ["DebertaV2ForQuestionAnswering"],
        "model_type": "deberta-v2",
        "hidden_size": 768,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-07,
        "max_position_embeddings": 512,
        "max_relative_positions": -1,
        "norm_rel_ebd": "layer_norm",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "pooler_dropout": 0,
        "pooler_hidden_act": "gelu",
        "pooler_hidden_size": 768,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": False,
        "position_buckets": 256,
        "relative_attention": True,
        "share_att_key": True,
        "type_vocab_size": 0,
        "vocab_size": 128100,
    },
    "electra-base-discriminator": {
        **_BERT_LIKE,
        "architectures": ["ElectraForQuestionAnswering"],
        "model_type": "electra",
        "embedding_size": 768,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": 30522,
    },
    "mobilebert-uncased": {
        "architectures": ["MobileBertForQuestionAnswering"],
        "model_type": "mobilebert",
        "attention_probs_dropout_prob": 0.1,
        "classifier_activation": False,
        "embedding_size": 128,
        "hidden_act": "relu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": 512,
        "initializer_range": 0.02,
        "intermediate_size": 512,
        "intra_bottleneck_size": 128,
        "key_query_shared_bottleneck": True,
        "max_position_embeddings": 512,
        "normalization_type": "no_norm",
        "num_attention_heads": 4,
        "num_feedforward_networks": 4,
        "num_hidden_layers": 24,
        "pad_token_id": 0,
        "trigram_input": True,
        "true_hidden_size": 128,
        "type_vocab_size": 2,
        "use_bottleneck": True,
        "use_bottleneck_attention": False,
        "vocab_size": 30522,
    },
}
CONFIGS["mdeberta-v3-base"] = {**CONFIGS["deberta-v3-base"], "vocab_size": 251000}

# test checkpoint -> (published config, tokenizer kind)
FAMILIES: dict[str, tuple[str, str]] = {
    "xlm-roberta": ("xlm-roberta-base", "xlm-roberta"),
    "deberta-v3": ("deberta-v3-base", "deberta-v2"),
    "mdeberta-v3": ("mdeberta-v3-base", "deberta-v2"),
    "electra": ("electra-base-discriminator", "wordpiece"),
    "mobilebert": ("mobilebert-uncased", "wordpiece"),
}


def _training_text(shared: Path) -> list[str]:
    from multilingual import PAIRS

    data = json.loads((shared / "data" / "squad" / "dev-v2.0.json").read_text(encoding="utf-8"))
    contexts = [p["context"] for a in data["data"] for p in a["paragraphs"]]
    lines = [s for c in contexts[:600] for s in c.split(". ")]
    for question, context in PAIRS:
        lines += [question, context] * 20  # every script of the tests, often enough to get pieces
    return lines


def sentencepiece_model(kind: str, shared: Path, vocab_size: int = 6000) -> bytes:
    """A unigram SentencePiece model trained on SQuAD contexts and the tests' multilingual text,
    with ``kind``'s special pieces: XLM-R's ``<unk> <s> </s>`` (transformers' class adds the
    fairseq offset and ``<pad>``), DeBERTa-v3's ``[PAD] [CLS] [SEP] [UNK]`` at ids 0-3 (byte
    fallback on, as in DeBERTa-v3's model)."""
    import sentencepiece as spm

    if kind == "xlm-roberta":
        specials: dict[str, Any] = {"unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1}
    else:
        specials = {
            "pad_id": 0,
            "bos_id": 1,
            "eos_id": 2,
            "unk_id": 3,
            "pad_piece": "[PAD]",
            "bos_piece": "[CLS]",
            "eos_piece": "[SEP]",
            "unk_piece": "[UNK]",
            "byte_fallback": True,
        }
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_training_text(shared)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        **specials,
    )
    return model.getvalue()


def _tokenizer(kind: str, shared: Path, out: Path, with_json: bool) -> int:
    """Write the tokenizer files of ``kind`` into ``out``; its length."""
    if kind == "wordpiece":
        from transformers import BertTokenizerFast

        seed = shared / "seeds" / "tinybert-6l-768d-squad2"
        tok = BertTokenizerFast(vocab_file=str(seed / "vocab.txt"), do_lower_case=True)
        tok.model_max_length = 512
        tok.save_pretrained(out)
        return len(tok)
    from transformers import DebertaV2Tokenizer, XLMRobertaTokenizer

    cls, file = (
        (XLMRobertaTokenizer, "sentencepiece.bpe.model") if kind == "xlm-roberta" else (DebertaV2Tokenizer, "spm.model")
    )
    key = f"{kind}.model"
    cache = Path(__file__).resolve().parent / ".cache"
    cache.mkdir(exist_ok=True)
    if not (cache / key).is_file():
        (cache / key).write_bytes(sentencepiece_model(kind, shared))
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache / key, out / file)
    slow = cls(vocab_file=str(out / file), model_max_length=512)
    slow.save_pretrained(out)
    if with_json:
        from transformers import AutoTokenizer

        fast = AutoTokenizer.from_pretrained(out)  # transformers' converter, as a hub repository's author would
        fast.save_pretrained(out)
    return len(slow)


def build_checkpoint(
    family: str,
    shared: Path,
    out: Path,
    *,
    layers: int | None = 2,
    with_json: bool = True,
    full_vocab: bool = False,
    seed: int = 0,
    config_name: str | None = None,
) -> Path:
    """A ``family`` QA checkpoint in ``out`` (see the module doc); ``layers=None``: as published;
    ``config_name``: another of :data:`CONFIGS` than the family's."""
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    name, kind = FAMILIES[family]
    name = config_name or name
    out.mkdir(parents=True, exist_ok=True)
    size = _tokenizer(kind, shared, out, with_json)
    fields = dict(CONFIGS[name])
    if layers is not None:
        fields["num_hidden_layers"] = layers
    if not full_vocab:
        fields["vocab_size"] = size
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields)
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_config(config)
    with torch.no_grad():
        model.qa_outputs.weight.normal_(0.0, 1.0)
    model.save_pretrained(out)
    return out
