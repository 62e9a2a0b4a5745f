"""The export's graph passes on hand-built graphs (no torch): same outputs, fewer nodes, and what
they must leave alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxqa.export._passes import (
    VOCABULARY_ROWS,
    disabled_optimizers,
    fold_bias_into_int8_matmul,
    fold_constant_subgraphs,
    quantize_vocabulary_tables,
    run_passes,
    unfuse_bias_gelu,
    unfuse_skip_layer_norm,
)


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
    assert run_passes(again) == {"fold_constant_subgraphs": 0, "unfuse_skip_layer_norm": 0, "unfuse_bias_gelu": 0}
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


def _embedding_model(fused: bool, rows: int = VOCABULARY_ROWS) -> onnx.ModelProto:
    """Word, position and token-type tables gathered by ids: with plain ``Gather`` nodes, or
    through onnxruntime's ``EmbedLayerNormalization`` (as the optimizer fuses BERT's)."""
    rng = np.random.default_rng(3)
    h = 16
    word = (rng.standard_normal((rows, h)) * rng.uniform(0.01, 3, (rows, 1))).astype(np.float32)
    word[5] = 0.0  # an all-zero row keeps a usable scale
    tables = {"word": word, "pos": rng.standard_normal((16, h)).astype(np.float32)}
    tables["types"] = rng.standard_normal((2, h)).astype(np.float32)
    inits = [numpy_helper.from_array(v, k) for k, v in tables.items()]
    inits += [
        numpy_helper.from_array(np.ones(h, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(h, np.float32), "beta"),
    ]
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])
    if fused:
        nodes = [
            helper.make_node("Cast", ["ids"], ["ids32"], to=TensorProto.INT32),
            helper.make_node("Cast", ["mask"], ["mask32"], to=TensorProto.INT32),
            helper.make_node("Mul", ["ids32", "zero32"], ["types32"]),
            helper.make_node(
                "EmbedLayerNormalization",
                ["ids32", "types32", "word", "pos", "types", "gamma", "beta", "mask32"],
                ["emb", "mask_index"],
                domain="com.microsoft",
                epsilon=1e-12,
            ),
        ]
        inits.append(numpy_helper.from_array(np.array(0, np.int32), "zero32"))
        inputs = [ids, helper.make_tensor_value_info("mask", TensorProto.INT64, ["b", "s"])]
        outputs = [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["b", "s", h]),
            helper.make_tensor_value_info("mask_index", TensorProto.INT32, ["b"]),
        ]
    else:
        nodes = [
            helper.make_node("Gather", ["word", "ids"], ["w"]),
            helper.make_node("Gather", ["pos", "positions"], ["p"]),
            helper.make_node("Add", ["w", "p"], ["emb"]),
        ]
        inputs = [ids, helper.make_tensor_value_info("positions", TensorProto.INT64, ["b", "s"])]
        outputs = [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["b", "s", h])]
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=opsets)
    model.ir_version = 8
    return model


def _run_feeds(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.mark.parametrize("fused", [False, True], ids=["gather", "EmbedLayerNormalization"])
def test_a_vocabulary_table_is_stored_int8_per_row(fused):
    model = _embedding_model(fused)
    rng = np.random.default_rng(4)
    ids = rng.integers(0, VOCABULARY_ROWS, (3, 7))
    ids[0, 1] = 5  # the all-zero row
    feeds = {"ids": ids}
    if fused:
        feeds["mask"] = np.array([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4])
    else:
        feeds["positions"] = np.tile(np.arange(7), (3, 1))
    before = _run_feeds(model, feeds)
    size = model.ByteSize()
    assert quantize_vocabulary_tables(model) == 1
    onnx.checker.check_model(model)
    kinds = {i.name: i.data_type for i in model.graph.initializer}
    assert "word" not in kinds and kinds["word_int8"] == TensorProto.INT8 and kinds["word_scale"] == TensorProto.FLOAT
    assert kinds["pos"] == TensorProto.FLOAT and model.ByteSize() < 0.35 * size  # positions are no vocabulary
    after = _run_feeds(model, feeds)
    if fused:
        np.testing.assert_array_equal(before[1], after[1])  # the mask index, unchanged
        np.testing.assert_allclose(before[0], after[0], atol=0.03)  # layer-normed: unit scale
    else:
        word = _embedding_model(False).graph.initializer[0]
        rows = numpy_helper.to_array(word)[ids]
        step = np.abs(rows).max(axis=-1, keepdims=True) / 127  # one int8 step of the row
        assert np.all(np.abs(before[0] - after[0]) <= step / 2 + 1e-6)


def test_tables_read_otherwise_or_too_short_stay_fp32():
    short = _embedding_model(False, rows=VOCABULARY_ROWS - 1)
    assert quantize_vocabulary_tables(short) == 0
    shared = _embedding_model(False)
    shared.graph.node.append(helper.make_node("ReduceSum", ["word"], ["total"], keepdims=0))
    shared.graph.output.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    assert quantize_vocabulary_tables(shared) == 0
    assert "word" in {i.name for i in shared.graph.initializer}


def _fused_model() -> onnx.ModelProto:
    """Two fused CPU operators as onnxruntime's optimizer writes them: ``SkipLayerNormalization``
    with a bias and its input+skip sum read further on, and ``BiasGelu``."""
    rng = np.random.default_rng(5)
    h = 16
    inits = [
        numpy_helper.from_array(rng.standard_normal(h).astype(np.float32), name)
        for name in ("gamma", "beta", "bias", "gelu_bias")
    ]
    nodes = [
        helper.make_node(
            "SkipLayerNormalization",
            ["x", "skip", "gamma", "beta", "bias"],
            ["normed", "", "", "summed"],
            domain="com.microsoft",
            epsilon=1e-5,
        ),
        helper.make_node("BiasGelu", ["normed", "gelu_bias"], ["activated"], domain="com.microsoft"),
        helper.make_node("Add", ["activated", "summed"], ["y"]),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", h]) for n in ("x", "skip", "y")]
    graph = helper.make_graph(nodes, "g", io[:2], io[2:], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def test_fused_cpu_operators_are_taken_apart_and_stay_apart(tmp_path):
    model = _fused_model()
    rng = np.random.default_rng(6)
    feeds = {name: rng.standard_normal((2, 3, 16)).astype(np.float32) for name in ("x", "skip")}
    before = _run_feeds(model, feeds)
    assert unfuse_skip_layer_norm(model) == 1 and unfuse_bias_gelu(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "SkipLayerNormalization" not in ops and "BiasGelu" not in ops
    assert {"LayerNormalization", "Gelu"} <= set(ops)
    disabled = disabled_optimizers({"unfuse_skip_layer_norm": 1, "unfuse_bias_gelu": 1, "fold_constant_subgraphs": 3})
    assert disabled == ["SkipLayerNormFusion", "BiasGeluFusion"]
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "as-run.onnx")
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )
    np.testing.assert_allclose(session.run(None, feeds)[0], before[0], rtol=1e-5, atol=1e-5)
    as_run = [n.op_type for n in onnx.load(tmp_path / "as-run.onnx").graph.node]
    assert "SkipLayerNormalization" not in as_run and "BiasGelu" not in as_run  # not fused back
    assert disabled_optimizers({"unfuse_skip_layer_norm": 0, "unfuse_bias_gelu": 0}) == []


def test_a_skip_layer_norm_whose_statistics_are_read_stays_fused():
    model = _fused_model()
    node = model.graph.node[0]
    node.output[1] = "mean"
    model.graph.output.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, None))
    assert unfuse_skip_layer_norm(model) == 0


def _qdq_model() -> onnx.ModelProto:
    """Quantize-dequantize MatMuls of x (n, 8) to 6 columns, weights per column with non-zero zero
    points: ``Add(P1, b)``; ``Add(b, Add(P2, r))`` (a residual taken apart); one whose product is
    also returned, and one whose weight scales run along its rows (``axis=0``): those two stay."""
    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
    ]
    for k in (1, 2, 3, 4):
        along = 8 if k == 4 else 6  # k=4: one scale per row
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (8, 6)).astype(np.int8), f"w{k}"),
            numpy_helper.from_array(rng.uniform(0.01, 0.02, along).astype(np.float32), f"ws{k}"),
            numpy_helper.from_array(rng.integers(-3, 4, along).astype(np.int8), f"wz{k}"),
        ]
        axis = 0 if k == 4 else 1
        nodes += [
            helper.make_node("DequantizeLinear", [f"w{k}", f"ws{k}", f"wz{k}"], [f"wd{k}"], axis=axis),
            helper.make_node("MatMul", ["xd", f"wd{k}"], [f"p{k}"]),
        ]
    nodes += [
        helper.make_node("Add", ["p1", "b"], ["y1"]),
        helper.make_node("Add", ["p2", "r"], ["s2"]),
        helper.make_node("Add", ["b", "s2"], ["y2"]),
        helper.make_node("Add", ["p3", "b"], ["y3"]),
        helper.make_node("Add", ["p4", "b"], ["y4"]),
    ]
    outputs = ["y1", "y2", "y3", "p3", "y4"]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])]
        + [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 6]) for n in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_biases_go_into_the_int8_matmuls_with_the_same_outputs():
    model = _qdq_model()
    rng = np.random.default_rng(8)
    feeds = {"x": rng.standard_normal((5, 8)).astype(np.float32), "r": rng.standard_normal((5, 6)).astype(np.float32)}
    before = _run_feeds(model, feeds)
    assert fold_bias_into_int8_matmul(model) == 2
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 2 and ops.count("MatMul") == 2  # the returned product, per row
    assert ops.count("Add") == 3  # the residual's, and the biases of the two that stay
    assert ops.count("DequantizeLinear") == 3  # the activation's and the two kept MatMuls' weights
    assert any(o.domain == "com.microsoft" for o in model.opset_import)
    for a, b in zip(_run_feeds(model, feeds), before):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert fold_bias_into_int8_matmul(model) == 0  # nothing left to fold
