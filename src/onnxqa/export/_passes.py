"""Graph passes over operator patterns: ``PASSES`` run on the optimized fp32 graph before it is
validated against PyTorch (so every variant built from it inherits them, checked); ``INT8_PASSES``
run on the int8 graph before its check against fp32.

Each pass is a function ``pass(model) -> int`` (how many places it changed), named for what it
does, independent of the model family: a family whose graph shows the pattern gets the pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MS = "com.microsoft"

__all__ = [
    "INT8_PASSES",
    "KEPT_APART",
    "PASSES",
    "VOCABULARY_ROWS",
    "disabled_optimizers",
    "fold_bias_into_int8_matmul",
    "fold_constant_subgraphs",
    "quantize_vocabulary_tables",
    "run_passes",
    "unfuse_bias_gelu",
    "unfuse_skip_layer_norm",
]


def _constant_nodes(graph: Any) -> tuple[list[Any], set[str]]:
    """The nodes (other than ``Constant``) whose inputs are all constants, transitively, and the
    names of every constant tensor."""
    constant = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    folded: list[Any] = []
    for node in graph.node:  # the graph is in topological order
        if node.op_type == "Constant" or not node.output or not node.input:  # RandomNormal & co. draw anew
            continue
        if node.op_type in ("If", "Loop", "Scan") or node.domain not in ("", "ai.onnx"):
            continue
        if all(i == "" or i in constant for i in node.input):
            folded.append(node)
            constant.update(node.output)
    return folded, constant


def fold_constant_subgraphs(model: Any) -> int:
    """Compute once, at export, what the graph computes from its weights alone, and store the
    results as weights: e.g. DeBERTa's relative-position projections (layer norm of the position
    embeddings, then each layer's query and key projections of them), which otherwise run in every
    inference call — and which int8 would quantize, since its quantize/dequantize pairs keep
    onnxruntime from folding them at load. Returns the number of nodes removed."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = model.graph
    folded, constant = _constant_nodes(graph)
    if not folded:
        return 0
    produced = {o for n in folded for o in n.output}
    folded_ids = {id(n) for n in folded}
    outputs = {o.name for o in graph.output}
    # the folded tensors something else still reads: these become weights
    frontier = sorted((_read(n for n in graph.node if id(n) not in folded_ids) & produced) | (produced & outputs))
    if not frontier:
        return 0
    needed_inits = {i for n in folded for i in n.input} & {t.name for t in graph.initializer}
    body = helper.make_graph(
        [n for n in graph.node if n.op_type == "Constant"] + folded,
        "constants",
        [],
        [],
        [t for t in graph.initializer if t.name in needed_inits],
    )
    probe = helper.make_model(body, opset_imports=list(model.opset_import))
    probe.ir_version = model.ir_version
    typed = {v.name: v for v in onnx.shape_inference.infer_shapes(probe).graph.value_info}
    frontier = [name for name in frontier if name in typed and typed[name].type.tensor_type.elem_type]
    if not frontier:
        return 0
    probe.graph.output.extend(typed[name] for name in frontier)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(frontier, {})
    # a folded node stays when an output of its is still read and was not computed here
    computed = set(frontier)
    unresolved = ((_read(n for n in graph.node if id(n) not in folded_ids) | outputs) & produced) - computed
    if unresolved:  # keep the whole constant chain behind an untyped tensor: simplest, and rare
        return 0
    kept = [n for n in graph.node if id(n) not in folded_ids]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name) for name, v in zip(frontier, values))
    _drop_unused(graph)
    return len(folded)


def _subgraphs(node: Any) -> list[Any]:
    """The graphs a node holds as attributes (an If's branches, a Loop's body)."""
    return [sub for a in node.attribute for sub in ([a.g, *a.graphs] if a.HasField("g") else a.graphs)]


def _read_inside(node: Any) -> set[str]:
    """The tensor names ``node``'s subgraphs read or return (they read the outer graph's by name)."""
    return {name for sub in _subgraphs(node) for name in _read(sub.node) | {o.name for o in sub.output}}


def _read(nodes: Any) -> set[str]:
    """Every tensor name the nodes read, also from inside their subgraphs."""
    names: set[str] = set()
    for n in nodes:
        names.update(n.input)
        names |= _read_inside(n)
    return names


def _drop_unused(graph: Any) -> None:
    used = _read(graph.node) | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Constant" and not set(n.output) & used]:
        graph.node.remove(node)
    for init in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(init)
    names = {i.name for i in graph.initializer}
    for info in [v for v in graph.value_info if v.name in names]:
        graph.value_info.remove(info)


# a table gathered by rows with at least this many rows is a vocabulary (every family's has over
# 28,000); position tables (512 to 4,096 rows) and token-type tables stay fp32
VOCABULARY_ROWS = 8192


def _int8_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``table ~= q * scale`` with ``scale`` of shape (rows, 1)."""
    scale = np.abs(table).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def _dequantized_rows(table: str, ids: str, out: str) -> list[Any]:
    """Nodes reading rows ``ids`` of the int8 ``table`` as fp32 into ``out``: the int8 rows and
    their scales gathered, then multiplied (the gathered rows only, never the whole table)."""
    from onnx import TensorProto, helper

    return [
        helper.make_node("Gather", [f"{table}_int8", ids], [f"{out}_int8"], name=f"{out}_gather_int8", axis=0),
        helper.make_node("Gather", [f"{table}_scale", ids], [f"{out}_scale"], name=f"{out}_gather_scale", axis=0),
        helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{out}_cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{out}_dequantize"),
    ]


def _rows_for_fused_embedding(node: Any, table: str) -> list[Any]:
    """Before onnxruntime's ``EmbedLayerNormalization`` (which gathers from a whole table it is
    given): the rows its ``input_ids`` name, dequantized, as its table, and ids 0..n-1 in their
    place. The fused kernel (embeddings, positions, layer norm and the attention mask's index) runs
    as before on the same values."""
    from onnx import TensorProto, helper, numpy_helper

    ids, out = node.input[0], f"{node.name or node.output[0]}_vocabulary"
    constants = {f"{out}_flat_shape": np.array([-1], np.int64), f"{out}_zero": np.array(0, np.int64)}
    constants[f"{out}_one"] = np.array(1, np.int64)
    nodes = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(v, name))
        for name, v in constants.items()
    ]
    nodes += [
        helper.make_node("Shape", [ids], [f"{out}_shape"], name=f"{out}_shape"),
        helper.make_node("Reshape", [ids, f"{out}_flat_shape"], [f"{out}_flat"], name=f"{out}_flatten"),
        *_dequantized_rows(table, f"{out}_flat", f"{out}_rows"),
        helper.make_node("Size", [ids], [f"{out}_count"], name=f"{out}_size"),
        helper.make_node("Range", [f"{out}_zero", f"{out}_count", f"{out}_one"], [f"{out}_range"], name=f"{out}_range"),
        helper.make_node("Cast", [f"{out}_range"], [f"{out}_range32"], name=f"{out}_range_cast", to=TensorProto.INT32),
        helper.make_node("Reshape", [f"{out}_range32", f"{out}_shape"], [f"{out}_ids"], name=f"{out}_ids"),
    ]
    node.input[0], node.input[2] = f"{out}_ids", f"{out}_rows"
    return nodes


def quantize_vocabulary_tables(model: Any) -> int:
    """Store each vocabulary table (an fp32 initializer of at least ``VOCABULARY_ROWS`` rows,
    gathered by rows) in int8 with one scale per row, dequantized after the gather: the word
    embeddings, otherwise the largest fp32 tensor of an int8 graph (154 of 199 MB in a 768-wide
    RoBERTa). Handles a plain ``Gather`` on axis 0 and onnxruntime's ``EmbedLayerNormalization``;
    a table read any other way stays fp32. Returns the number of tables stored in int8."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    tables = {
        t.name: t
        for t in graph.initializer
        if t.data_type == TensorProto.FLOAT and len(t.dims) == 2 and t.dims[0] >= VOCABULARY_ROWS
    }

    def reads(node: Any, name: str) -> str:
        """How ``node`` reads table ``name``: "gather", "fused" or "other"."""
        if node.op_type == "Gather" and node.input[0] == name and name not in node.input[1:]:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            return "gather" if axis == 0 else "other"
        if (
            node.op_type == "EmbedLayerNormalization"
            and list(node.input).index(name) == 2
            and list(node.input).count(name) == 1
        ):
            return "fused"
        return "other"

    readers = {name: [n for n in graph.node if name in n.input] for name in tables}
    chosen = [name for name, nodes in readers.items() if nodes and all(reads(n, name) != "other" for n in nodes)]
    if not chosen:
        return 0
    added: dict[int, list[Any]] = {}
    for name in chosen:
        q, scale = _int8_rows(numpy_helper.to_array(tables[name]))
        graph.initializer.remove(tables[name])
        graph.initializer.extend(
            [numpy_helper.from_array(q, f"{name}_int8"), numpy_helper.from_array(scale, f"{name}_scale")]
        )
        for node in readers[name]:
            if reads(node, name) == "gather":
                added[id(node)] = _dequantized_rows(name, node.input[1], node.output[0])
            else:
                added[id(node)] = _rows_for_fused_embedding(node, name)
    nodes = []
    for node in graph.node:
        if id(node) in added and node.op_type == "Gather":
            nodes.extend(added[id(node)])  # the plain gather is replaced
        else:
            nodes.extend([*added.get(id(node), []), node])
    del graph.node[:]
    graph.node.extend(nodes)
    return len(chosen)


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def unfuse_skip_layer_norm(model: Any) -> int:
    """``SkipLayerNormalization`` -> ``Add`` (+ ``Add`` of its bias) + ``LayerNormalization``: on
    the CPU onnxruntime's fused kernel is a scalar loop, ``LayerNormalization`` an MLAS kernel
    (faster from ~150-token windows on; measured in docs/benchmarks.md, "Fused kernels taken
    apart"). The same arithmetic; the session must then
    run without ``SkipLayerNormFusion`` (see ``KEPT_APART``). A node whose mean or variance
    output is read stays fused. Returns the number rewritten."""
    from onnx import helper

    graph, nodes, rewritten = model.graph, [], 0
    read = _read(graph.node) | {o.name for o in graph.output}
    for node in graph.node:
        stats = [o for o in node.output[1:3] if o]
        if node.op_type != "SkipLayerNormalization" or set(stats) & read:
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        total = f"{name}_input_skip_sum"
        nodes.append(helper.make_node("Add", list(node.input[:2]), [total], name=f"{name}_add"))
        if len(node.input) > 4 and node.input[4]:
            nodes.append(helper.make_node("Add", [total, node.input[4]], [f"{total}_bias"], name=f"{name}_add_bias"))
            total = f"{total}_bias"
        norm = [total, node.input[2]] + ([node.input[3]] if len(node.input) > 3 and node.input[3] else [])
        epsilon = _attribute(node, "epsilon", 1e-12)
        nodes.append(
            helper.make_node(
                "LayerNormalization", norm, [node.output[0]], name=f"{name}_norm", axis=-1, epsilon=epsilon
            )
        )
        if len(node.output) > 3 and node.output[3]:  # the sum itself, read by the next layer's skip
            nodes.append(helper.make_node("Identity", [total], [node.output[3]], name=f"{name}_sum"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def unfuse_bias_gelu(model: Any) -> int:
    """``BiasGelu`` -> ``Add`` + ``Gelu`` (both onnxruntime operators with vectorized CPU kernels;
    the fused one is not); the session must then run without ``BiasGeluFusion``. Returns the
    number rewritten."""
    from onnx import helper

    graph, nodes, rewritten = model.graph, [], 0
    for node in graph.node:
        if node.op_type != "BiasGelu":
            nodes.append(node)
            continue
        name = node.name or node.output[0]
        nodes.append(helper.make_node("Add", list(node.input[:2]), [f"{name}_biased"], name=f"{name}_add"))
        nodes.append(
            helper.make_node("Gelu", [f"{name}_biased"], [node.output[0]], name=f"{name}_gelu", domain="com.microsoft")
        )
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _quantized_product(tensor: str, producer: dict[str, Any], readers: Any, constants: dict[str, Any]) -> Any:
    """``(MatMul, activation DequantizeLinear, weight DequantizeLinear)`` where ``tensor`` is read
    once and is the product of a uint8 activation dequantized per tensor and a constant 2-D int8
    weight dequantized per column or per tensor (what onnxruntime's ``MatMulIntegerToFloat`` CPU
    kernel takes); else None."""
    from onnx import TensorProto

    matmul = producer.get(tensor)
    if matmul is None or matmul.op_type != "MatMul" or readers[tensor] != 1:
        return None
    dx, dw = producer.get(matmul.input[0]), producer.get(matmul.input[1])
    if not all(d is not None and d.op_type == "DequantizeLinear" for d in (dx, dw)):
        return None
    if _attribute(dx, "block_size", 0) or _attribute(dw, "block_size", 0) or len(dx.input) < 3:
        return None
    x_scale, x_zero, weight, w_scale = (constants.get(n) for n in (*dx.input[1:3], *dw.input[:2]))
    w_zero = constants.get(dw.input[2]) if len(dw.input) > 2 and dw.input[2] else None
    if None in (x_scale, x_zero, weight, w_scale) or len(weight.dims) != 2:
        return None
    columns = weight.dims[1]
    per_column = list(w_scale.dims) == [columns] and _attribute(dw, "axis", 1) in (1, -1)
    typed = (
        x_scale.data_type == w_scale.data_type == TensorProto.FLOAT
        and x_zero.data_type == TensorProto.UINT8
        and weight.data_type == TensorProto.INT8
        and (w_zero is None or (w_zero.data_type == TensorProto.INT8 and list(w_zero.dims) == list(w_scale.dims)))
    )
    scalar = all(int(np.prod(t.dims)) == 1 for t in (x_scale, x_zero))
    return (matmul, dx, dw) if typed and scalar and (per_column or int(np.prod(w_scale.dims)) == 1) else None


def fold_bias_into_int8_matmul(model: Any) -> int:
    """The ``Add`` of a constant 1-D bias to a quantize-dequantize ``MatMul``'s product --
    ``Add(P, b)``, or ``Add(Add(P, R), b)`` as ``unfuse_skip_layer_norm`` leaves a residual ``R`` --
    -> ``MatMulIntegerToFloat`` with the bias as its input: what onnxruntime builds from the QDQ
    pair at load, less one element-wise pass over the product (``Add(P, b)``: the same arithmetic;
    ``(P + b) + R`` instead of ``(P + R) + b``: equal up to float rounding). Worth most where the
    MatMuls are many and narrow (MobileBERT: 361 of them). Returns the number folded."""
    from collections import Counter

    from onnx import TensorProto, helper

    graph = model.graph
    constants = {i.name: i for i in graph.initializer}
    biases = {name: t.dims[0] for name, t in constants.items() if len(t.dims) == 1 and t.data_type == TensorProto.FLOAT}
    producer = {o: n for n in graph.node for o in n.output}
    readers = Counter(i for n in graph.node for i in n.input)
    readers.update(o.name for o in graph.output)
    for node in graph.node:  # an If / Loop body reads the outer graph's tensors by name
        readers.update(_read_inside(node))

    replaced: dict[int, Any] = {}
    gone: set[int] = set()
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2 or not set(add.input) & biases.keys():
            continue
        bias = next(i for i in add.input if i in biases)
        other = next((i for i in add.input if i != bias), bias)
        inner, found = producer.get(other), _quantized_product(other, producer, readers, constants)
        if found is None and inner is not None and inner.op_type == "Add" and readers[other] == 1:
            found = next((f for i in inner.input if (f := _quantized_product(i, producer, readers, constants))), None)
        if found is None or id(found[0]) in replaced or (inner is not None and id(inner) in gone):
            continue
        matmul, dx, dw = found
        if biases[bias] != constants[dw.input[0]].dims[1]:
            continue
        xz, wz = ([*d.input, ""][2] for d in (dx, dw))
        inputs = [dx.input[0], dw.input[0], dx.input[1], dw.input[1], xz, wz, bias]
        fused = helper.make_node(
            "MatMulIntegerToFloat",
            inputs,
            [matmul.output[0]],
            name=f"{matmul.name or matmul.output[0]}_bias",
            domain=MS,
        )
        replaced[id(matmul)] = fused
        if inner is matmul:  # Add(P, b): the fused node writes the sum
            fused.output[0] = add.output[0]
        else:  # Add(Add(P, R), b): the inner Add writes it
            inner.output[0] = add.output[0]
        gone.add(id(add))
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in gone]
    while True:  # the DequantizeLinear nodes nothing reads any more
        read = _read(nodes) | {o.name for o in graph.output}
        kept = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
        if len(kept) == len(nodes):
            break
        nodes = kept
    del graph.node[:]
    graph.node.extend(nodes)
    produced = {o for n in nodes for o in n.output} | {i.name for i in graph.input}
    for info in [v for v in graph.value_info if v.name not in produced]:  # the sums now written elsewhere
        graph.value_info.remove(info)
    if not any(o.domain == MS for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS, 1))
    return len(replaced)


PASSES = {
    "fold_constant_subgraphs": fold_constant_subgraphs,
    "unfuse_skip_layer_norm": unfuse_skip_layer_norm,
    "unfuse_bias_gelu": unfuse_bias_gelu,
}
# onnxruntime's own optimizers that would fuse back what a pass took apart: a session over a graph
# the pass changed runs without them (the manifest lists them per variant, the runtime obeys)
KEPT_APART = {"unfuse_skip_layer_norm": "SkipLayerNormFusion", "unfuse_bias_gelu": "BiasGeluFusion"}
INT8_PASSES = {
    "quantize_vocabulary_tables": quantize_vocabulary_tables,
    "fold_bias_into_int8_matmul": fold_bias_into_int8_matmul,
}


def run_passes(model: Any, passes: dict[str, Any] = PASSES) -> dict[str, int]:
    """Every pass of ``passes`` in order on ``model`` (changed in place): how many places each
    changed."""
    return {name: fn(model) for name, fn in passes.items()}


def disabled_optimizers(counts: dict[str, int]) -> list[str]:
    """The onnxruntime optimizers a session must leave out after passes that changed ``counts``."""
    return [KEPT_APART[name] for name, n in counts.items() if n and name in KEPT_APART]
