"""benchmarks/int8_rewrites.py's candidate rewrites, on small hand-built graphs: a rewrite is
timed there only if it computes what the shipped graph computes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import bench_module


@pytest.fixture(scope="module")
def rewrites():
    return bench_module("int8_rewrites")


def _smoothed_quantize(m: np.ndarray, scale: float, zero: int, reader: str = "QuantizeLinear"):
    """x -> Mul(x, m) -> QuantizeLinear(scale, zero) -> y, as the export smooths a GELU output."""
    nodes = [helper.make_node("Mul", ["x", "m"], ["xm"], name="smooth")]
    if reader == "QuantizeLinear":
        nodes.append(helper.make_node("QuantizeLinear", ["xm", "s", "z"], ["y"], name="quantize"))
    else:  # something else reads the smoothed tensor: nothing to fold
        nodes.append(helper.make_node("Relu", ["xm"], ["y"], name="other"))
    out_type = TensorProto.UINT8 if reader == "QuantizeLinear" else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "smoothed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, len(m)])],
        [helper.make_tensor_value_info("y", out_type, None)],
        [
            numpy_helper.from_array(m, "m"),
            numpy_helper.from_array(np.array(scale, np.float32), "s"),
            numpy_helper.from_array(np.array(zero, np.uint8), "z"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_smoothing_goes_into_a_per_channel_quantize_with_the_same_int8_values(rewrites):
    rng = np.random.default_rng(0)
    m = rng.uniform(0.2, 3.0, 64).astype(np.float32)
    m[5] = 0.0  # a channel taken out of the int8 product (an outlier): quantized to the zero point
    x = rng.normal(0.0, 2.0, (1, 40, 64)).astype(np.float32)
    model = _smoothed_quantize(m, 0.05, 20)
    before = _run(model, x)
    assert rewrites.smoothing_into_quantize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear"]
    after = _run(model, x)
    assert (after[..., 5] == 20).all()
    steps = np.abs(after.astype(int) - before.astype(int))
    assert steps.max() <= 1 and (steps > 0).mean() < 0.01  # x * m / s against x / (s / m): rounding only


def test_a_smoothed_tensor_read_by_anything_else_is_left(rewrites):
    model = _smoothed_quantize(np.ones(8, np.float32), 0.05, 20, reader="Relu")
    assert rewrites.smoothing_into_quantize(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Mul", "Relu"]
