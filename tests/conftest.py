"""Shared fixtures: seed checkpoints with random weights, exported once per test session; model
directories built without torch; a recorder of inference calls.

Everything real comes from ``../shared`` beside the repository (seed configs and tokenizers, the
trained reference model, SQuAD dev sets); tests that need it skip when it is absent on a user's
machine, and fail under ``CI=true``, where a skip would let the suite pass while testing nothing.

Tests that need torch (an export, a checkpoint, a PyTorch or Haystack reference) are marked ``export``
automatically (see :func:`pytest_collection_modifyitems`): ``pytest -m "not export"`` runs the
others, on the torch-free ``fake_model`` directories, in about a minute.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
# the families beyond the seeds, as exported by the tests: name -> (families.py family, with tokenizer.json)
FAMILY_CHECKPOINTS = {
    "xlm-roberta": ("xlm-roberta", True),
    "xlm-roberta-spm": ("xlm-roberta", False),
    "deberta-v3": ("deberta-v3", True),
    "mdeberta-v3-spm": ("mdeberta-v3", False),
    "electra": ("electra", True),
    "mobilebert": ("mobilebert", True),
}
SKIP_REASON = f"{SHARED} not found: the seed configs, reference model and SQuAD data live in ../shared beside the repo"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = SKIP_REASON if not SHARED.exists() else f"{path} not found"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def bench_module(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module, with its folder on the path as when it runs as a script."""
    import importlib.util

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


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
        if name in FAMILY_CHECKPOINTS:
            family, with_json = FAMILY_CHECKPOINTS[name]
            return self.family(family, with_json=with_json)
        if name not in self.checkpoints:
            if name == REFERENCE:
                self.checkpoints[name] = shared_path("models", REFERENCE)
            else:
                self.checkpoints[name] = make_checkpoint(shared_path("seeds", name), self.base / "ckpt" / name)
        return self.checkpoints[name]

    def family(self, name: str, *, with_json: bool = True) -> Path:
        """A 2-layer checkpoint of a family beyond the seeds (``families.py``); ``with_json=False``:
        its tokenizer as a SentencePiece model only, as several hub repositories ship it."""
        key = name if with_json else f"{name}-spm"
        if key not in self.checkpoints:
            from families import build_checkpoint

            shared_path("data", "squad", "dev-v2.0.json")  # the tokenizer's training text
            self.checkpoints[key] = build_checkpoint(name, SHARED, self.base / "ckpt" / key, with_json=with_json)
        return self.checkpoints[key]

    def exported(self, name: str, int8: str = "static") -> Path:
        key = name if int8 == "static" else f"{name}-{int8}"
        if key not in self.exports:
            from onnxqa.export import ExportConfig, export

            out = self.base / "onnx" / key
            # the int8 check and calibration on fewer generated pairs than the default for the big
            # seeds and the reference model: both are tested with the defaults on bert-tiny, and the
            # reference model's int8 accuracy at the defaults is measured by benchmarks/int8_variants.py
            if name == SEEDS[-1]:
                check, calibrate = 200, 200
            elif name in FAMILY_CHECKPOINTS:
                check, calibrate = 40, 16
            elif name == REFERENCE:
                check, calibrate = 60, 50
            else:
                check, calibrate = 30, 16
            config = ExportConfig(
                precisions=("fp32", "int8"),
                check_pairs=check,
                int8=int8,
                calibration_pairs=calibrate,
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


@pytest.fixture(scope="session")
def fake_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory built without torch (bert-tiny's tokenizer, a small hand-made graph; see
    ``fake_model.py``): for runtime, serving, batch and CLI tests that need no real weights."""
    from fake_model import make_fake_model

    seed = shared_path("seeds", "bert-tiny-finetuned-squadv2")
    return make_fake_model(seed, tmp_path_factory.mktemp("fake") / "model")


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`fake_model` costing a few milliseconds per window, like a small real one on 2 cores: for
    the serving tests that need requests still running a while after they were sent."""
    from fake_model import make_fake_model

    seed = shared_path("seeds", "bert-tiny-finetuned-squadv2")
    return make_fake_model(seed, tmp_path_factory.mktemp("slow") / "model", layers=6, hidden=384)


@pytest.fixture(scope="session")
def fake_model_dynamic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`fake_model` with an int8 variant marked dynamic (not batch-invariant) beside fp32."""
    from fake_model import make_fake_model

    seed = shared_path("seeds", "bert-tiny-finetuned-squadv2")
    return make_fake_model(seed, tmp_path_factory.mktemp("fake") / "model-dynamic", dynamic_int8=True)


@contextlib.contextmanager
def _recorded_calls(qa: Any) -> Iterator[list[tuple[int, ...]]]:
    shapes: list[tuple[int, ...]] = []
    engine = qa._engine  # the one look inside the answerer: stage listeners count windows, not padded shapes
    run = engine.run

    def recording(ids: Any, types: Any, mask: Any) -> Any:
        shapes.append(tuple(ids.shape))
        return run(ids, types, mask)

    engine.run = recording
    try:
        yield shapes
    finally:
        del engine.run


@pytest.fixture
def record_calls() -> Callable[[Any], contextlib.AbstractContextManager[list[tuple[int, ...]]]]:
    """``with record_calls(qa) as shapes:``: the ``(rows, width)`` input shape of every inference
    call ``qa`` makes inside the block, in order (padding rows and tokens included)."""
    return _recorded_calls


# ---------------------------------------------------------------- the export marker

EXPORT_FIXTURES = {"store"}  # and, through pytest's fixture closure, every fixture that depends on it
TORCH_STACK = ("torch", "transformers", "optimum", "haystack")  # haystack 2.x imports torch when it is installed
_NEEDS_TORCH = re.compile(
    rf"^\s*(?:import|from)\s+(?:{'|'.join(TORCH_STACK)})\b"  # an import of the stack
    rf"|importorskip\(\s*[\"'](?:{'|'.join(TORCH_STACK)})\b"
    r"|\b(?:make_checkpoint|random_checkpoint|torch_reader|export)\("  # a checkpoint, an export, a torch reader
    r"|\[\s*[\"']export[\"']\s*,",  # ``onnxqa export`` on the command line
    re.MULTILINE,
)


@functools.cache
def _source_needs_torch(function: Callable[..., Any]) -> bool:
    try:
        return bool(_NEEDS_TORCH.search(inspect.getsource(function)))
    except (OSError, TypeError):
        return False


@functools.cache
def _module_imports_torch(path: str) -> bool:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(n.split(".")[0] in TORCH_STACK for n in names):
            return True
    return False


def _needs_export(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    if EXPORT_FIXTURES & set(names):
        return True
    function = getattr(item, "function", None)
    if function is not None and _source_needs_torch(function):
        return True
    if _module_imports_torch(str(item.path)):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for name in names:
        defs = info.name2fixturedefs.get(name, ()) if info is not None else ()
        if any(_source_needs_torch(d.func) for d in defs):
            return True
    return False


def _excludes_export(config: pytest.Config) -> bool:
    """Whether ``-m`` leaves out every ``export`` test (``not export``, alone or joined by ``and``)."""
    expression = config.option.markexpr or ""
    return " or " not in f" {expression} " and "not export" in [p.strip() for p in re.split(r"\band\b", expression)]


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """With ``-m "not export"``, test modules that import the torch stack at their top are not even
    imported (every test of theirs is marked ``export``): nothing imports torch."""
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_") and _excludes_export(config):
        if _module_imports_torch(str(collection_path)):
            return True
    return None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``export`` every test that exports with torch or imports it: one that uses the ``store``
    fixture or a fixture depending on it (``tiny``, ``tiny_dynamic``, ...), or whose own code, one
    of its fixtures, or its module's imports build a checkpoint, export, or import torch,
    transformers, optimum or haystack (which imports torch).

    ``slow`` tests run only when the ``-m`` expression names them (``-m "not export"`` replaces
    the default ``-m 'not slow'`` but still leaves them out)."""
    for item in items:
        if _needs_export(item):
            item.add_marker(pytest.mark.export)
    if "slow" not in (config.option.markexpr or ""):
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
