"""The checkpoint to export: located, checked and loaded, every user mistake an :class:`ExportError`."""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import ExportError
from .._manifest import sha256_file
from ._families import FAMILIES, family_of, supported_model_types

__all__ = ["Checkpoint", "load_checkpoint", "resolve"]

SUPPORTED = supported_model_types()
# single files, and shards as save_pretrained writes them (with their index files beside them)
_WEIGHTS = re.compile(
    r"^(model\.safetensors|pytorch_model\.bin|model-\d+-of-\d+\.safetensors|pytorch_model-\d+-of-\d+\.bin)$"
)
# every file some family's tokenizer is made of (the hub download takes them all)
_TOKENIZER_GROUPS = sorted({g for f in FAMILIES.values() for g in f.tokenizer_files})


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the PyTorch model, its tokenizer and what the manifest records of them."""

    source_id: str  # hub id, or the directory name of a local checkpoint (no absolute path)
    path: Path  # local directory (the hub's snapshot for a hub id)
    tokenizer_path: Path
    model: Any
    tokenizer: Any
    config: Any
    weights_sha256: str


def resolve(source: str, what: str = "checkpoint") -> tuple[Path, bool]:
    """A local directory for ``source`` (a directory, or a hub id fetched into the hub's cache),
    and whether it came from the hub."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path, False
    if path.exists():
        raise ExportError(f"{path} is a file; pass a {what} directory or a Hugging Face Hub id")
    try:
        from huggingface_hub import snapshot_download

        fetched = snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin", "*.model"])
    except Exception as exc:
        raise ExportError(
            f"{source!r} is not a local directory and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}); check the id and the network, or pass a local {what} directory"
        ) from exc
    return Path(fetched), True


def _weight_files(src: Path) -> list[Path]:
    files = sorted(p for p in src.iterdir() if _WEIGHTS.match(p.name))
    if not files:
        raise ExportError(
            f"{src} has no weights: expected model.safetensors or pytorch_model.bin, or their shards "
            "(model-00001-of-0000N.safetensors / pytorch_model-00001-of-0000N.bin with the index file)"
        )
    return files


def weights_sha256(src: Path) -> str:
    digest = hashlib.sha256()
    for p in _weight_files(src):
        digest.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return digest.hexdigest()


def _has_tokenizer_files(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    return "tokenizer.json" in names or any(set(group) <= names for group in _TOKENIZER_GROUPS)


def _load_config(src: Path) -> Any:
    from transformers import AutoConfig

    if not (src / "config.json").is_file():
        raise ExportError(f"{src} has no config.json: pass a Hugging Face checkpoint directory")
    try:
        config = AutoConfig.from_pretrained(src)
    except Exception as exc:  # transformers raises ValueError, OSError, JSON errors, KeyError ...
        raise ExportError(f"{src}/config.json cannot be read as a model config ({type(exc).__name__}: {exc})") from exc
    family_of(config.model_type)  # an ExportError naming the supported types
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith("ForQuestionAnswering") for a in architectures):
        raise ExportError(
            f"{src} is a {', '.join(architectures)} checkpoint, not a question-answering one: export a checkpoint "
            f"fine-tuned for extractive QA (its config.json names a ...ForQuestionAnswering architecture)"
        )
    return config


def _load_tokenizer(path: Path, pass_flag: bool, family: Any) -> Any:
    """The fast tokenizer of ``path``: its tokenizer.json, or one that transformers' own converter
    builds from the slow tokenizer's files (a SentencePiece model, a WordPiece or BPE vocabulary)."""
    from transformers import AutoTokenizer

    if not _has_tokenizer_files(path):
        hint = "pass --tokenizer PATH_OR_ID (tokenizer=... in ExportConfig) to take them from the base model"
        raise ExportError(
            f"{path} has no tokenizer files ({family.tokenizer_hint()}, usually with tokenizer_config.json): "
            + (
                f"copy them there from the model it was trained from, or {hint}"
                if pass_flag
                else "pass a directory with them"
            )
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        hint = ""
        if any(word in str(exc).lower() for word in ("sentencepiece", "protobuf")):
            hint = "; converting a SentencePiece model needs sentencepiece and protobuf: pip install 'onnxqa[export]'"
        raise ExportError(
            f"the tokenizer files in {path} cannot be loaded ({type(exc).__name__}: {str(exc)[:300]}){hint}"
        ) from exc
    for w in caught:  # transformers' converter warns of what the fast tokenizer cannot reproduce
        if "byte fallback" not in str(w.message).lower():
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            warnings.warn(
                f"{path}: the SentencePiece model uses byte fallback, which the converted tokenizer.json does not "
                "reproduce: characters missing from its vocabulary become the unknown token instead of bytes "
                "(the transformers pipeline's fast tokenizer does the same)",
                stacklevel=3,
            )
    if not tokenizer.is_fast:
        raise ExportError(
            f"{path} has no fast tokenizer (tokenizer.json) and transformers could not convert its files to one; "
            "onnxqa needs one"
        )
    if tokenizer.padding_side != "right":
        raise ExportError(f"the tokenizer pads on the {tokenizer.padding_side}; onnxqa supports right padding only")
    return tokenizer


def _load_model(src: Path) -> Any:
    from transformers import AutoModelForQuestionAnswering

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model, info = AutoModelForQuestionAnswering.from_pretrained(src, output_loading_info=True)
    except Exception as exc:
        raise ExportError(
            f"the weights in {src} cannot be loaded ({type(exc).__name__}: {str(exc)[:500]}). A corrupt or truncated "
            "file: download it again. Pickle weights (.bin) refused by the installed torch's safe loader: convert "
            "them to safetensors with a tool you trust, then export again"
        ) from exc
    missing = [k for k in info.get("missing_keys", []) if "qa_outputs" in k]
    if missing:
        raise ExportError(
            f"{src} has no trained question-answering head ({', '.join(missing)} missing from its weights): "
            "export a checkpoint fine-tuned for extractive QA"
        )
    return model.eval()


def load_checkpoint(source: str, src: Path, from_hub: bool, tokenizer_path: Path | None = None) -> Checkpoint:
    """Load the checkpoint ``source`` found at ``src`` (see :func:`resolve`), and its tokenizer from
    ``tokenizer_path`` when given, else from ``src``."""
    config = _load_config(src)
    tok_path = tokenizer_path if tokenizer_path is not None else src
    tokenizer = _load_tokenizer(tok_path, pass_flag=tokenizer_path is None, family=family_of(config.model_type))
    weights = weights_sha256(src)
    model = _load_model(src)
    return Checkpoint(
        source_id=source if from_hub else src.resolve().name,
        path=src,
        tokenizer_path=tok_path,
        model=model,
        tokenizer=tokenizer,
        config=config,
        weights_sha256=weights,
    )
