"""Graph passes over operator patterns, run on the optimized fp32 graph before it is validated
against PyTorch (so every variant built from it inherits them, checked).

Each pass is a function ``pass(model) -> int`` (how many places it changed), named for what it
does, independent of the model family: a family whose graph shows the pattern gets the pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PASSES", "fold_constant_subgraphs", "run_passes"]


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


def _read(nodes: Any) -> set[str]:
    """Every tensor name the nodes read, also from inside their subgraphs (If / Loop bodies read
    the outer graph's tensors by name)."""
    names: set[str] = set()
    for n in nodes:
        names.update(n.input)
        for attribute in n.attribute:
            for sub in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                names |= _read(sub.node) | {o.name for o in sub.output}
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


PASSES = {"fold_constant_subgraphs": fold_constant_subgraphs}


def run_passes(model: Any) -> dict[str, int]:
    """Every pass in order on ``model`` (changed in place): how many places each changed."""
    return {name: fn(model) for name, fn in PASSES.items()}
