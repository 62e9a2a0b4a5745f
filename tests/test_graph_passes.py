"""The export's graph passes on hand-built graphs (no torch): same outputs, fewer nodes, and what
they must leave alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxqa.export._passes import fold_constant_subgraphs, run_passes


def _model(with_if: bool = False) -> onnx.ModelProto:
    """x (n, 4) @ (LayerNorm(P) @ W)^T-like: a projection of a constant table, as DeBERTa's
    relative-position keys, then used with the input; optionally an If whose branch reads a
    constant of the outer graph."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "P"),
        numpy_helper.from_array(np.ones(4, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(4, np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["P", "gamma", "beta"], ["Pn"], axis=-1, epsilon=1e-7),
        helper.make_node("MatMul", ["Pn", "W"], ["PW"]),
        helper.make_node("Add", ["PW", "b"], ["K"]),
        helper.make_node("Transpose", ["K"], ["Kt"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "Kt"], ["scores"]),  # reads the input: stays
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 6])]
    if with_if:
        nodes.append(helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.float32(2.0))))
        branch = helper.make_graph(
            [helper.make_node("Mul", ["scores", "two"], ["y_then"])],
            "then",
            [],
            [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["n", 6])],
        )
        other = helper.make_graph(
            [helper.make_node("Identity", ["scores"], ["y_else"])],
            "else",
            [],
            [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["n", 6])],
        )
        nodes += [
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0.0))),
            helper.make_node("Greater", ["total", "zero"], ["positive"]),
            helper.make_node("If", ["positive"], ["y"], then_branch=branch, else_branch=other),
        ]
        outputs.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("with_if", [False, True])
def test_a_projection_of_weights_is_computed_once(with_if):
    model = _model(with_if)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    before = _run(model, x)
    folded = fold_constant_subgraphs(model)
    assert folded == 4  # LayerNormalization, MatMul, Add, Transpose
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "LayerNormalization" not in ops and ops.count("MatMul") == 1
    assert {i.name for i in model.graph.initializer} == {"Kt"}  # the table and weights it replaced are gone
    for a, b in zip(before, _run(model, x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nothing_to_fold_changes_nothing():
    model = _model()
    fold_constant_subgraphs(model)
    again = onnx.ModelProto()
    again.CopyFrom(model)
    assert run_passes(again) == {"fold_constant_subgraphs": 0}
    assert again == model


def test_folded_tensors_read_by_a_subgraph_or_returned_become_weights():
    """A folded tensor that only an If branch reads, or that the graph returns, is computed and
    kept as a weight; nodes without inputs (random draws) are never folded."""
    model = _model()
    g = model.graph
    g.node.extend(
        [
            # weights alone: folded, read inside the If only
            helper.make_node("ReduceMax", ["Kt"], ["b2"], axes=[0], keepdims=0),
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.float32(0.0))),
            helper.make_node("Greater", ["total", "zero"], ["positive"]),
            helper.make_node(
                "If",
                ["positive"],
                ["y"],
                then_branch=helper.make_graph(
                    [helper.make_node("Add", ["scores", "b2"], ["y_then"])],
                    "then",
                    [],
                    [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, ["n", 6])],
                ),
                else_branch=helper.make_graph(
                    [helper.make_node("Sub", ["scores", "b2"], ["y_else"])],
                    "else",
                    [],
                    [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, ["n", 6])],
                ),
            ),
            helper.make_node("Neg", ["b"], ["minus_b"]),  # weights alone, and a graph output
            helper.make_node("RandomNormal", [], ["noise"], shape=[4]),
            helper.make_node("Add", ["minus_b", "noise"], ["noisy"]),
        ]
    )
    g.output.extend(
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 6]),
            helper.make_tensor_value_info("minus_b", TensorProto.FLOAT, [4]),
            helper.make_tensor_value_info("noisy", TensorProto.FLOAT, [4]),
        ]
    )
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    fold_constant_subgraphs(model)
    names = {i.name for i in model.graph.initializer}
    assert {"b2", "minus_b", "Kt"} <= names
    ops = [n.op_type for n in model.graph.node]
    assert "RandomNormal" in ops and "Neg" not in ops
    scores, y, minus_b, _ = _run(model, x)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    b = numpy_helper.to_array(next(i for i in _model().graph.initializer if i.name == "b"))
    np.testing.assert_allclose(minus_b, -b)
    top = weights["Kt"].max(axis=0)
    np.testing.assert_allclose(y, scores + top if x.sum() > 0 else scores - top, rtol=1e-5, atol=1e-6)
