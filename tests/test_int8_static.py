"""Static int8 (the default int8 variant): quantized operator counts, the check against fp32,
answers independent of batch neighbours, calibration on a user's SQuAD file, the dynamic option."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
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
    # the QA head in fp32 (random weights: no input channel of a feed-forward output stands out, so
    # none is computed apart); the encoder's MatMuls with their biases folded in (a constant bias
    # added to each product: attention output, feed-forward input and output)
    assert int8["quantization"]["outlier_channels"] == "none"
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
    assert int8["quantization"]["smoothed"] == "none" and int8["quantization"]["outlier_channels"] == "none"
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


def _gelu_product(residual: bool, rng) -> onnx.ModelProto:
    """x -> Gelu -> MatMul(W) -> (+ r) -> + b: a feed-forward output, channel 3 of its input ~25x wider
    than the rest and its weight row ~50x (the pattern of a trained model's first layer)."""
    from onnx import TensorProto, helper, numpy_helper

    w = rng.standard_normal((16, 12)).astype(np.float32) * 0.1
    w[3] *= 50.0
    nodes = [
        helper.make_node("Mul", ["x", "gain"], ["xs"], name="gain"),
        helper.make_node("Gelu", ["xs"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("MatMul", ["g", "w"], ["p"], name="ffn_out"),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, 16])]
    if residual:
        inputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, None, 12]))
        nodes += [
            helper.make_node("Add", ["p", "r"], ["pr"], name="residual"),
            helper.make_node("Add", ["pr", "b"], ["y"], name="bias"),
        ]
    else:
        nodes.append(helper.make_node("Add", ["p", "b"], ["y"], name="bias"))
    gain = np.ones(16, np.float32)
    gain[3] = 25.0
    initializers = [
        numpy_helper.from_array(a, n) for a, n in ((gain, "gain"), (w, "w"), (np.ones(12, np.float32), "b"))
    ]
    graph = helper.make_graph(
        nodes, "ffn", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, None, 12])], initializers
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    return model


def _run(model, feed):
    return _run_all(model, feed)[0]


@pytest.mark.parametrize("residual", [True, False])
def test_the_widest_channels_leave_the_int8_product_for_an_fp32_one(residual):
    from onnxqa.export._quantize import _Feeds, _smooth_gelu_inputs

    rng = np.random.default_rng(0)
    model = _gelu_product(residual, rng)
    feeds = [{"x": rng.standard_normal((1, n, 16)).astype(np.float32)} for n in (5, 9, 7)]
    for f in feeds:
        if residual:
            f["r"] = rng.standard_normal((1, f["x"].shape[1], 12)).astype(np.float32)
    before = [_run(model, f) for f in feeds]
    assert _smooth_gelu_inputs(model, _Feeds(feeds, {"x", "r"}), 0.8, outliers=2) == (1, 1)
    onnx.checker.check_model(model)
    # the same function, in fp32
    for f, y in zip(feeds, before):
        np.testing.assert_allclose(_run(model, f), y, rtol=1e-5, atol=1e-5)
    constants = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    picked = constants["ffn_out_outlier_channels_index"]
    assert list(picked) == [3]  # the planted one; the others do not stand out
    # out of the int8 product: zero in its input (the smoothing Mul) and in its weight rows
    assert np.all(constants["ffn_out_smooth_inv_scale"][picked] == 0)
    assert np.all(constants["w"][picked] == 0)
    adds = {n.name: list(n.input) for n in model.graph.node if n.op_type == "Add"}
    if residual:  # joined to the residual, so that the bias Add still follows the product's sum
        assert adds["ffn_out_outlier_channels_add"] == ["r", "ffn_out_outlier_channels_y"]
        assert adds["residual"] == ["p", "ffn_out_outlier_channels_residual"]
    else:
        assert adds["ffn_out_outlier_channels_add"] == ["p_int8_part", "ffn_out_outlier_channels_y"]


def test_int8_with_the_outlier_channels_apart_is_closer_to_fp32(tmp_path):
    from onnxqa.export._quantize import quantize_static_int8

    rng = np.random.default_rng(1)
    model = _gelu_product(True, rng)
    onnx.save(model, tmp_path / "fp32.onnx")
    feeds = [
        {
            "x": rng.standard_normal((1, 24, 16)).astype(np.float32),
            "r": rng.standard_normal((1, 24, 12)).astype(np.float32),
        }
        for _ in range(20)
    ]
    errors = {}
    for outliers in (0, 4):
        out = tmp_path / f"int8-{outliers}.onnx"
        done = quantize_static_int8(tmp_path / "fp32.onnx", out, feeds[:10], outliers=outliers)
        assert done["matmuls"] == 1 and done["outliers"] == {"channels": min(outliers, 1), "matmuls": min(outliers, 1)}
        int8 = onnx.load(out)
        errors[outliers] = max(np.abs(_run(int8, f) - _run(model, f)).max() for f in feeds[10:])
    assert errors[4] < errors[0] / 4, errors


def test_outlier_channels_are_those_far_above_the_rest():
    from onnxqa.export._quantize import outlier_channels

    rng = np.random.default_rng(2)
    x, w = rng.uniform(1, 2, 3072), rng.uniform(0.1, 0.2, 3072)
    assert len(outlier_channels(x, w, 4)) == 0  # no channel stands out: none taken apart
    x[[7, 900, 2000]] = [40.0, 60.0, 120.0]
    w[[7, 900]] = 2.0
    assert list(outlier_channels(x, w, 4)) == [7, 900, 2000]
    assert list(outlier_channels(x, w, 2)) == [7, 900]  # the largest products first
    assert len(outlier_channels(x, w, 0)) == 0


def test_a_product_returned_as_well_keeps_its_value():
    from onnx import TensorProto, helper

    from onnxqa.export._quantize import _Feeds, _smooth_gelu_inputs

    rng = np.random.default_rng(3)
    model = _gelu_product(True, rng)
    model.graph.output.append(helper.make_tensor_value_info("p", TensorProto.FLOAT, [1, None, 12]))
    feeds = [{"x": rng.standard_normal((1, 6, 16)).astype(np.float32)} for _ in range(3)]
    for f in feeds:
        f["r"] = rng.standard_normal((1, 6, 12)).astype(np.float32)
    before = [_run_all(model, f) for f in feeds]
    assert _smooth_gelu_inputs(model, _Feeds(feeds, {"x", "r"}), 0.8, outliers=2) == (1, 1)
    adds = {n.name: list(n.input) for n in model.graph.node if n.op_type == "Add"}
    # not joined to the residual: the returned product must still hold the outlier channel's share
    assert adds["ffn_out_outlier_channels_add"] == ["p_int8_part", "ffn_out_outlier_channels_y"]
    for f, outputs in zip(feeds, before):
        for a, b in zip(_run_all(model, f), outputs):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _run_all(model, feed):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
