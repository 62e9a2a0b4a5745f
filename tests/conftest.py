"""Shared fixtures: seed checkpoints with random weights, exported once per test session.

Everything real comes from ``../shared`` beside the repository (seed configs and tokenizers, the
trained reference model, SQuAD dev sets); tests that need it skip when it is absent on a user's
machine, and fail under ``CI=true``, where a skip would let the suite pass while testing nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SEEDS = (
    "tinybert-6l-768d-squad2",
    "tinyroberta-squad2",
    "distilbert-base-cased-distilled-squad",
    "minilm-uncased-squad2",
    "bert-tiny-finetuned-squadv2",
)
REFERENCE = "minilm-l6-squad-ref"
SKIP_REASON = f"{SHARED} not found: the seed configs, reference model and SQuAD data live in ../shared beside the repo"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = SKIP_REASON if not SHARED.exists() else f"{path} not found"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def make_checkpoint(seed_dir: Path, out: Path, seed: int = 0) -> Path:
    """The seed's exact config and tokenizer with seeded random weights (QA head std 1.0)."""
    from onnxqa.export import random_checkpoint

    return random_checkpoint(seed_dir, out, seed=seed)


class _Store:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.checkpoints: dict[str, Path] = {}
        self.exports: dict[str, Path] = {}

    def checkpoint(self, name: str) -> Path:
        if name not in self.checkpoints:
            if name == REFERENCE:
                self.checkpoints[name] = shared_path("models", REFERENCE)
            else:
                self.checkpoints[name] = make_checkpoint(shared_path("seeds", name), self.base / "ckpt" / name)
        return self.checkpoints[name]

    def exported(self, name: str, int8: str = "static") -> Path:
        key = name if int8 == "static" else f"{name}-{int8}"
        if key not in self.exports:
            from onnxqa.export import ExportConfig, export

            out = self.base / "onnx" / key
            # the int8 check and calibration on fewer generated pairs than the default for the big
            # seeds: both are tested on bert-tiny and the reference model with the defaults
            pairs = 200 if name in (SEEDS[-1], REFERENCE) else 30
            config = ExportConfig(
                precisions=("fp32", "int8"),
                check_pairs=pairs,
                int8=int8,
                calibration_pairs=200 if pairs == 200 else 50,
                progress=False,
            )
            export(str(self.checkpoint(name)), out, config)
            self.exports[key] = out
        return self.exports[key]


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> _Store:
    return _Store(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny(store: _Store) -> Path:
    """The smallest seed (2 layers, hidden 128), exported: for fast runtime tests."""
    return store.exported("bert-tiny-finetuned-squadv2")


@pytest.fixture(scope="session")
def tiny_dynamic(store: _Store) -> Path:
    """The smallest seed with the dynamic int8 variant (scales computed per call)."""
    return store.exported("bert-tiny-finetuned-squadv2", int8="dynamic")


@pytest.fixture(scope="session")
def squad_v2() -> list[dict]:
    """Questions of the SQuAD 2.0 dev set as dicts (id, question, context, answers)."""
    data = json.loads(shared_path("data", "squad", "dev-v2.0.json").read_text(encoding="utf-8"))
    return [
        {"id": qa["id"], "question": qa["question"], "context": p["context"], "answers": qa["answers"]}
        for a in data["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
    ]
