"""Static int8 (the default int8 variant): quantized operator counts, the check against fp32,
answers independent of batch neighbours, calibration on a user's SQuAD file, the dynamic option."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import onnxqa
from onnxqa._errors import ExportError
from onnxqa._manifest import batch_invariant

from conftest import shared_path

TINY = "bert-tiny-finetuned-squadv2"


def _session_ops(path, tmp_path) -> Counter:
    """Operator types of the graph onnxruntime really runs on this CPU (after its own fusions)."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "session.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(tmp_path / "session.onnx").graph.node)


def _pairs(squad_v2, n=120):
    """Questions with contexts of many lengths, and two with several windows: batches of 64 pad."""
    long_context = " ".join(q["context"] for q in squad_v2[:400:50])
    pairs = [(q["question"], q["context"]) for q in squad_v2[:n]]
    return pairs + [("Who designed the bridge?", long_context), ("When was it built?", long_context)]


def test_static_int8_quantizes_every_encoder_matmul_and_attention(tiny, tmp_path):
    manifest = json.loads((tiny / "onnxqa.json").read_text())
    layers = manifest["architecture"]["num_layers"]
    int8 = manifest["variants"]["int8"]
    assert int8["quantization"]["method"] == "static"
    assert batch_invariant("int8", int8)
    ops = int8["fused_ops"]
    # per layer: QAttention (QKV projection), attention output, FFN input and FFN output MatMuls
    assert ops.get("QAttention") == layers
    assert ops.get("QuantizeLinear") == layers + 3 * layers
    assert "DynamicQuantizeLinear" not in ops and "MatMulInteger" not in ops
    # the QA head in fp32; the encoder's MatMuls with their biases folded in (a constant bias added
    # to each product: attention output, feed-forward input and output)
    assert ops.get("MatMul") == 1 and ops.get("MatMulIntegerToFloat") == 3 * layers
    assert int8["graph_passes"]["fold_bias_into_int8_matmul"] == 3 * layers

    # what onnxruntime runs: int8 kernels with static scales, only the QA head in fp32
    ran = _session_ops(tiny / int8["file"], tmp_path)
    assert ran["QAttention"] == layers
    assert ran["MatMulIntegerToFloat"] == 3 * layers
    assert ran["MatMul"] == 1
    assert ran["DynamicQuantizeLinear"] == 0

    # checked against fp32 on the bundled and 200 generated pairs, calibrated on others
    validation = int8["validation"]
    assert validation["status"] == "passed", validation
    assert validation["pairs"] == 206
    calibration = int8["quantization"]["calibration"]
    assert calibration["source"].startswith("generated") and calibration["pairs"] == 200
    assert calibration["windows"] >= 200
    assert int8["quantization"]["smoothed"].startswith(f"{layers} GELU-fed MatMuls")


def test_static_int8_answers_do_not_depend_on_batch_neighbours(tiny, squad_v2):
    qa = onnxqa.load(tiny, device="cpu", precision="int8")
    assert qa.batch_invariant
    pairs = _pairs(squad_v2)
    alone = qa.batch(pairs, batch_size=1, top_k=2, handle_impossible_answer=True)
    together = qa.batch(pairs, batch_size=64, top_k=2, handle_impossible_answer=True)
    spans = [[(a.start, a.end) for a in answers] for answers in alone]
    assert spans == [[(a.start, a.end) for a in answers] for answers in together]
    for a, b in zip(alone, together):
        assert [x.score for x in a] == pytest.approx([y.score for y in b], rel=1e-4, abs=1e-7)


def test_dynamic_int8_is_still_available(tiny_dynamic):
    manifest = json.loads((tiny_dynamic / "onnxqa.json").read_text())
    int8 = manifest["variants"]["int8"]
    assert int8["quantization"]["method"] == "dynamic"
    assert not batch_invariant("int8", int8)
    assert int8["fused_ops"].get("DynamicQuantizeLinear", 0) > 0
    assert int8["validation"]["status"] == "passed"


def test_static_int8_with_the_feed_forward_outputs_in_fp32(store, squad_v2, tmp_path):
    from onnxqa.export import ExportConfig, export

    config = ExportConfig(int8="static-ffn-fp32", calibration_pairs=30, check_pairs=20, progress=False)
    manifest = export(str(store.checkpoint(TINY)), tmp_path / "out", config)
    layers, int8 = manifest["architecture"]["num_layers"], manifest["variants"]["int8"]
    assert int8["quantization"]["method"] == "static" and batch_invariant("int8", int8)
    assert int8["quantization"]["smoothed"] == "none"
    assert f"{layers} feed-forward output MatMuls" in int8["quantization"]["kept_fp32"]
    ran = _session_ops(tmp_path / "out" / int8["file"], tmp_path)
    assert ran["QAttention"] == layers and ran["MatMulIntegerToFloat"] == 2 * layers
    assert ran["MatMul"] == layers + 1  # the feed-forward outputs and the QA head
    assert int8["validation"]["status"] == "passed"
    qa = onnxqa.load(tmp_path / "out", device="cpu", precision="int8")
    pairs = _pairs(squad_v2, 40)
    alone = qa.batch(pairs, batch_size=1, handle_impossible_answer=True)
    together = qa.batch(pairs, batch_size=64, handle_impossible_answer=True)
    assert [(a[0].start, a[0].end) for a in alone] == [(b[0].start, b[0].end) for b in together]
    assert [a[0].score for a in alone] == pytest.approx([b[0].score for b in together], rel=1e-4, abs=1e-7)


def test_calibration_on_a_squad_file(store, tmp_path):
    data = json.loads(shared_path("data", "squad", "reference-train.json").read_text(encoding="utf-8"))
    data["data"] = data["data"][:2]
    small = tmp_path / "domain.json"
    small.write_text(json.dumps(data), encoding="utf-8")
    from onnxqa.export import ExportConfig, export

    config = ExportConfig(calibration=str(small), calibration_pairs=30, check_pairs=20, progress=False)
    manifest = export(str(store.checkpoint(TINY)), tmp_path / "out", config)
    calibration = manifest["variants"]["int8"]["quantization"]["calibration"]
    assert calibration["source"] == "domain.json" and calibration["pairs"] == 30
    assert len(calibration["sha256"]) == 64
    assert manifest["variants"]["int8"]["validation"]["status"] == "passed"


@pytest.mark.parametrize(
    "options",
    [
        {"int8": "float"},
        {"calibration_pairs": 0},
        {"calibration_pairs": True},
        {"calibration_method": "entropy"},
        {"calibration_method": "percentile"},  # onnxruntime's histogram fails on windows of unequal lengths
    ],
)
def test_bad_int8_options_are_refused(options):
    from onnxqa.export import ExportConfig

    with pytest.raises(ExportError):
        ExportConfig(**options)


def test_missing_calibration_file_is_refused(store, tmp_path):
    from onnxqa.export import ExportConfig, export

    with pytest.raises(ExportError, match="calibration file"):
        export(str(store.checkpoint(TINY)), tmp_path / "out", ExportConfig(calibration=str(tmp_path / "nope.json")))
