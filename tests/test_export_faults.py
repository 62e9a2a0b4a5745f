"""An export interrupted at any step (exception or Ctrl-C) leaves no directory that looks complete,
and a refused or failed export never touches an existing output."""

from __future__ import annotations

import contextlib
import json

import pytest

from onnxqa import ExportError, ValidationError
from onnxqa._progress import Steps
from onnxqa.export import ExportConfig, export

from conftest import make_checkpoint, shared_path

N_STEPS = 5  # load, export, optimize, validate, int8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(shared_path("seeds", "bert-tiny-finetuned-squadv2"), tmp_path_factory.mktemp("ck") / "ck")


def _interrupt_at(monkeypatch, step: int, error: type[BaseException]) -> None:
    original = Steps.step

    @contextlib.contextmanager
    def step_then_fail(self, label):
        with original(self, label):
            yield
            if self.done == step:
                raise error(f"interrupted during step {step}: {label}")

    monkeypatch.setattr(Steps, "step", step_then_fail)


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("step", range(1, N_STEPS + 1))
def test_interrupted_export_leaves_nothing(checkpoint, tmp_path, monkeypatch, step, error):
    _interrupt_at(monkeypatch, step, error)
    out = tmp_path / "out" / "model"
    with pytest.raises(error):
        export(str(checkpoint), out, ExportConfig(progress=True))
    assert not out.exists()
    assert _leftovers(tmp_path / "out") == []


def test_interrupted_forced_export_keeps_the_old_directory(checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    (out / "onnxqa.json").write_text('{"format": 1, "old": true}')
    _interrupt_at(monkeypatch, 3, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        export(str(checkpoint), out, ExportConfig(force=True, progress=False))
    assert json.loads((out / "onnxqa.json").read_text()) == {"format": 1, "old": True}
    assert _leftovers(tmp_path) == ["model"]


def test_existing_output_refused_without_force(checkpoint, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    with pytest.raises(ExportError, match="--force"):
        export(str(checkpoint), out, ExportConfig(progress=False))
    assert _leftovers(out) == []


def test_force_replaces_a_model_directory(checkpoint, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "onnxqa.json").write_text('{"format": 1}')
    (out / "stale.txt").write_text("old")
    manifest = export(str(checkpoint), out, ExportConfig(precisions=("int8",), force=True, progress=False))
    assert set(manifest["variants"]) == {"int8"}
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "onnxqa.json", "tokenizer.json"]
    assert _leftovers(tmp_path) == ["model"]


def test_failed_validation_writes_nothing(checkpoint, tmp_path):
    with pytest.raises(ValidationError, match="differ from PyTorch"):
        export(str(checkpoint), tmp_path / "m", ExportConfig(atol=1e-12, progress=False))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "source, message",
    [
        ("no/such-model-anywhere", "could not be fetched"),
        (__file__, "is a file"),
    ],
)
def test_bad_sources(tmp_path, source, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ExportError, match=message):
        export(source, tmp_path / "m", ExportConfig(progress=False))
    assert _leftovers(tmp_path) == []


def test_unsupported_architecture(tmp_path):
    ck = tmp_path / "gpt"
    ck.mkdir()
    (ck / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ExportError, match="not supported"):
        export(str(ck), tmp_path / "m", ExportConfig(progress=False))
    assert _leftovers(tmp_path) == ["gpt"]


@pytest.mark.parametrize("precisions", [(), ("int4",)])
def test_bad_precisions(precisions):
    with pytest.raises(ExportError):
        ExportConfig(precisions=precisions)


def test_cli_export_error_exit_code(tmp_path, capsys):
    from onnxqa.cli import main

    assert main(["export", str(tmp_path / "nothing-here"), str(tmp_path / "m"), "--quiet"]) == 2
    assert "error" in capsys.readouterr().err
