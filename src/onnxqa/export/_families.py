"""The model families onnxqa exports, one entry each: everything that differs between them.

An entry says how to read the architecture from the config, which tokenizer files make a
tokenizer, how onnxruntime's transformer optimizer should treat the graph and which fusions it must
find, and what int8 leaves in fp32. The exporter, the quantizer and the graph passes read these
entries and otherwise work on operator patterns, so a family whose graph is BERT's gets BERT's
fusions and int8 with no code of its own. Adding a family is adding an entry here (and a test
checkpoint in ``tests/families.py``), as in optimum's model configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._errors import ExportError

__all__ = ["FAMILIES", "Family", "family_of", "supported_model_types"]

# what the fused operator counts must show for each kind of fusion the optimizer is expected to make
FUSIONS = {
    "attention": ("Attention", "MultiHeadAttention"),
    "layer norm": ("SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization"),
}


def _bert_dims(config: Any) -> tuple[int, int, int]:
    return config.num_hidden_layers, config.num_attention_heads, config.hidden_size


def _distilbert_dims(config: Any) -> tuple[int, int, int]:
    return config.n_layers, config.n_heads, config.dim


def _mobilebert_dims(config: Any) -> tuple[int, int, int]:
    # attention runs in the bottleneck (true_hidden_size); hidden_size is the inter-block width
    return config.num_hidden_layers, config.num_attention_heads, config.true_hidden_size


@dataclass(frozen=True)
class Family:
    """One model family: see the module doc."""

    model_type: str  # config.model_type
    name: str  # as the docs and errors name it
    checkpoints: tuple[str, ...]  # hub checkpoints it was built and tested for
    dims: Any = _bert_dims  # config -> (layers, heads, hidden size seen by attention)
    position_offset: bool = False  # positions start after the padding index (RoBERTa's embeddings)
    # tokenizer files: any one of these groups is a tokenizer (tokenizer.json always is)
    tokenizer_files: tuple[tuple[str, ...], ...] = (("vocab.txt",),)
    # onnxruntime.transformers.optimizer model_type; the fusions (keys of FUSIONS) it must make
    optimizer: str = "bert"
    fusions: tuple[str, ...] = ("attention", "layer norm")
    # the optimizer's symbolic shape inference: off where it finds no more and costs much (DeBERTa:
    # 12 layers took over 15 minutes and 21 GB, for the same fusions; only unneeded Casts remain)
    shape_inference: bool = True
    # int8: node-name fragments of MatMuls kept in fp32 besides the QA head and products of two
    # activations (which int8 never takes), and why
    int8_keep_fp32: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())  # known limits, for the docs

    def tokenizer_hint(self) -> str:
        groups = " / ".join(" + ".join(g) for g in self.tokenizer_files)
        return f"tokenizer.json, or {groups} ({self.name})"


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family(
            "bert",
            "BERT",
            ("deepset/tinybert-6l-768d-squad2", "deepset/minilm-uncased-squad2", "mrm8488/bert-tiny-finetuned-squadv2"),
        ),
        Family(
            "roberta",
            "RoBERTa",
            ("deepset/tinyroberta-squad2", "deepset/roberta-base-squad2"),
            position_offset=True,
            tokenizer_files=(("vocab.json", "merges.txt"),),
        ),
        Family(
            "distilbert",
            "DistilBERT",
            ("distilbert/distilbert-base-cased-distilled-squad",),
            dims=_distilbert_dims,
        ),
        Family(
            "xlm-roberta",
            "XLM-RoBERTa",
            ("deepset/xlm-roberta-base-squad2", "deepset/xlm-roberta-large-squad2"),
            position_offset=True,
            tokenizer_files=(("sentencepiece.bpe.model",),),
        ),
        Family(
            "deberta-v2",
            "DeBERTa-v2 / v3, mDeBERTa-v3",
            ("deepset/deberta-v3-base-squad2", "deepset/deberta-v3-large-squad2", "timpal0l/mdeberta-v3-base-squad2"),
            tokenizer_files=(("spm.model",),),
            fusions=("layer norm",),
            shape_inference=False,
            notes=(
                "disentangled attention has no onnxruntime fusion: it runs as separate MatMul / Gather / "
                "Softmax nodes, its linear layers in int8",
                "takes no token_type_ids (type_vocab_size 0)",
            ),
        ),
        Family(
            "electra",
            "ELECTRA",
            ("deepset/electra-base-squad2",),
        ),
        Family(
            "mobilebert",
            "MobileBERT",
            ("csarron/mobilebert-uncased-squad-v2",),
            dims=_mobilebert_dims,
            fusions=(),
            notes=(
                "no onnxruntime fusion matches its bottleneck attention or its NoNorm (an element-wise "
                "scale and shift instead of layer norm): the graph runs un-fused",
            ),
        ),
    )
}


def supported_model_types() -> tuple[str, ...]:
    return tuple(FAMILIES)


def family_of(model_type: str) -> Family:
    """The family of a config's ``model_type``; an :class:`ExportError` listing the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        supported = ", ".join(f"{f.model_type} ({f.name})" for f in FAMILIES.values())
        raise ExportError(f"model type {model_type!r} is not supported; onnxqa exports {supported}") from None
