"""The openvino-int8 variant: exported with NNCF, checked against fp32, hashed, run by OpenVINO
with the runtime's windows and decoding, and batch-invariant."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

import onnxqa
from onnxqa import ExportError, ModelLoadError, ProviderError

pytest.importorskip("openvino", reason="the openvino extra is not installed")
pytest.importorskip("nncf", reason="the openvino extra is not installed")

SEED = "xlm-roberta"  # a family whose OpenVINO int8 logits move when a window is padded
PRECISIONS = ("fp32", "int8", "openvino-int8")


@pytest.fixture(scope="module")
def ov_model(store, tmp_path_factory):
    from onnxqa.export import ExportConfig, export

    out = tmp_path_factory.mktemp("openvino") / "model"
    config = ExportConfig(precisions=PRECISIONS, check_pairs=30, calibration_pairs=16, progress=False)
    export(str(store.checkpoint(SEED)), out, config)
    return out


@pytest.fixture(scope="module")
def pairs(squad_v2):
    return [(q["question"], q["context"]) for q in squad_v2[:80]]


def test_export_writes_a_checked_hashed_openvino_variant(ov_model):
    from onnxqa._manifest import sha256_file

    manifest = json.loads((ov_model / "onnxqa.json").read_text())
    entry = manifest["variants"]["openvino-int8"]
    assert entry["backend"] == "openvino" and entry["validation"]["status"] == "passed"
    assert entry["validation"]["reference"] == "fp32" and entry["validation"]["pairs"] > 30
    (weights,) = entry["external_data"]
    assert sha256_file(ov_model / entry["file"]) == entry["sha256"]
    assert sha256_file(ov_model / weights["file"]) == weights["sha256"]
    assert entry["fused_ops"]["FakeQuantize"] > 0  # int8, not a float graph under another name
    # calibrated on the windows that calibrate onnxruntime's int8
    assert entry["quantization"]["calibration"] == manifest["variants"]["int8"]["quantization"]["calibration"]
    assert not list(ov_model.glob("raw*")) and not list(ov_model.parent.glob(".model.partial-*"))


def test_answers_are_batch_invariant_and_close_to_fp32(ov_model, pairs):
    with onnxqa.load(ov_model, precision="openvino-int8", threads=2) as qa:
        assert qa.batch_invariant
        alone = [qa(q, c, top_k=3) for q, c in pairs]
        for batch_size in (4, 16):  # other windows beside it, padded to the longest
            assert qa.batch(pairs, batch_size=batch_size, top_k=3) == alone
        with onnxqa.load(ov_model, precision="openvino-int8", threads=2, buckets=True) as padded:
            assert padded.batch(pairs, batch_size=8, top_k=3) == alone  # padded to fixed widths
    fp32 = onnxqa.load(ov_model, precision="fp32").batch(pairs)
    same = sum((a[0].start, a[0].end) == (b[0].start, b[0].end) for a, b in zip(alone, fp32))
    assert same >= 0.85 * len(pairs)  # the int8 check's limit, on questions it did not see
    for (_, context), answers in zip(pairs, alone):
        assert answers[0].text == context[answers[0].start : answers[0].end]


def test_auto_keeps_onnxruntime_and_the_cache_is_used(ov_model, tmp_path, monkeypatch):
    assert onnxqa.load(ov_model, device="cpu").precision == "int8"  # untuned: today's default
    monkeypatch.setenv("ONNXQA_OPENVINO_CACHE", str(tmp_path / "cache"))
    onnxqa.load(ov_model, precision="openvino-int8")("Who?", "Ada wrote it.")
    assert any((tmp_path / "cache").iterdir())  # OpenVINO's compiled model, for the next load


@pytest.mark.parametrize("damage", ["weights altered", "weights missing", "graph altered"])
def test_a_damaged_variant_is_refused(ov_model, tmp_path, damage):
    model = tmp_path / "model"
    shutil.copytree(ov_model, model)
    entry = json.loads((model / "onnxqa.json").read_text())["variants"]["openvino-int8"]
    weights = model / entry["external_data"][0]["file"]
    if damage == "weights missing":
        weights.unlink()
    else:
        path = weights if damage == "weights altered" else model / entry["file"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="missing|does not match the hash"):
        onnxqa.load(model, precision="openvino-int8")
    onnxqa.load(model, precision="int8")  # the other variants are untouched


def test_without_openvino_the_error_says_what_to_install(ov_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ProviderError, match=r"onnxqa\[openvino\]"):
        onnxqa.load(ov_model, precision="openvino-int8")


def test_without_openvino_the_variant_is_not_offered(ov_model, monkeypatch):
    from onnxqa.runtime import _variants

    assert onnxqa.runtime.suited_precisions(ov_model, "cpu") == list(PRECISIONS)
    monkeypatch.setattr(_variants, "openvino_available", lambda: False)
    assert onnxqa.runtime.suited_precisions(ov_model, "cpu") == ["fp32", "int8"]  # tune and bench measure these


def test_export_without_the_extra_writes_nothing(store, tmp_path, monkeypatch):
    from onnxqa.export import ExportConfig, export

    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(ExportError, match=r"onnxqa\[openvino\]"):
        export(str(store.checkpoint(SEED)), tmp_path / "out", ExportConfig(precisions=PRECISIONS, progress=False))
    assert not list(tmp_path.iterdir())


def test_tune_measures_the_openvino_variant(ov_model, tmp_path, monkeypatch):
    import os

    from onnxqa import tune as tuning

    # one thread count and one call size (test_tune.py covers the grid): each variant, measured
    monkeypatch.setattr(tuning, "_thread_counts", lambda: [os.cpu_count() or 1])
    monkeypatch.setattr(tuning, "BATCH_SIZES", (1,))
    model = tmp_path / "model"
    shutil.copytree(ov_model, model)
    result = tuning.tune(model, seconds=1.0)
    assert {m["precision"] for m in result["measured"]} == set(PRECISIONS)
    assert result["machine"]["openvino"]
    with onnxqa.load(model, device="cpu") as qa:
        assert qa.precision == result["chosen"]["precision"]
