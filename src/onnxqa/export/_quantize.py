"""int8 quantization of the optimized fp32 graph: static (calibrated at export) or dynamic.

Static, the default, in five steps on the fused CPU graph:

    SmoothQuant on the feed-forward output MatMuls (GELU outliers moved into the weights; alpha 0.8),
    their outlier input channels (if any) taken out into a small fp32 product beside the int8 one
    -> attention -> QAttention (int8 weights per column; input scale calibrated, a constant)
    -> every encoder MatMul -> QuantizeLinear / DequantizeLinear around it (QDQ; int8 weights per
       column, uint8 activations per tensor with calibrated ranges), which onnxruntime runs as
       MatMulIntegerToFloat
    -> residual connections back to fp32 (the quantizer's shared QDQ pair also fed the skip input
       of SkipLayerNormalization)
    -> IR version onnxruntime reads

Activation scales are constants, so a window's logits do not depend on the other windows of its
batch. The QA output head (hidden -> 2) stays fp32: it is tiny and its output is the answer.

Dynamic (the variant shipped before, kept as ``int8="dynamic"``): activation scales computed per
call, the MatMuls fed by GELU kept in fp32.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._io import data_file, is_large, save_onnx, session_source

__all__ = [
    "CALIBRATIONS",
    "OUTLIER_CHANNELS",
    "OUTLIER_RATIO",
    "SMOOTH_ALPHA",
    "gelu_fed_matmuls",
    "quantize_dynamic_int8",
    "quantize_static_int8",
]

# how activation ranges are calibrated: min and max over the calibration windows. onnxruntime's
# histogram methods (percentile, entropy) stack every window's tensors into one array and so fail on
# windows of unequal lengths, which real calibration sets always have
CALIBRATIONS = ("minmax",)
# SmoothQuant's migration strength, chosen on the reference model (BENCHMARKS.md): 0.5 and 0.8 are
# equal with calibration on SQuAD training questions, 0.8 also holds with the generated pairs
SMOOTH_ALPHA = 0.8
# outlier channels: the input channels of a GELU-fed MatMul whose max|x| * max|w| over the
# calibration windows exceeds OUTLIER_RATIO times the median channel's (at most OUTLIER_CHANNELS of
# them) are computed in fp32 beside its int8 product. In the reference model's first four layers
# one or two channels stand 200-1100x above the median (the rest under 15x; in models with random
# weights, under 4x); left in, the first layer's moved every no-answer score up
# (docs/design/int8.md, "Outlier channels apart")
OUTLIER_RATIO = 50.0
OUTLIER_CHANNELS = 4
_QA_HEAD = "qa_outputs"


def _quiet() -> None:
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))


class _Feeds:
    """onnxruntime's CalibrationDataReader protocol over a list of model inputs."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]], names: set[str]) -> None:
        self._it = iter([{k: v for k, v in f.items() if k in names} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - the quantizer may call it; one pass is enough
        pass


def _input_names(model: Any) -> set[str]:
    return {i.name for i in model.graph.input}


def _typed(model: Any) -> Any:
    """Declare the MatMul and Attention inputs float: the outputs of onnxruntime's contrib operators
    carry no type, and the QDQ quantizer skips untyped tensors."""
    from onnx import TensorProto, helper

    g = model.graph
    known = {v.name for v in [*g.value_info, *g.input, *g.output]}
    wanted = {n.input[0] for n in g.node if n.op_type in ("MatMul", "Attention")}
    for name in sorted(wanted - known):
        g.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model


def _uint8_qparams(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric uint8 scale and zero point of the range [lo, hi], widened to contain 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    zero = int(np.clip(round(-lo / scale), 0, 255))
    return np.array(scale, np.float32), np.array(zero, np.uint8)


def gelu_fed_matmuls(graph: Any) -> list[str]:
    """The MatMuls whose input is a GELU's output: the feed-forward output projections, whose
    inputs carry the widest outlier channels of the encoder."""
    gelu = {o for n in graph.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
    return [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0] in gelu and n.name]


def kept_matmuls(graph: Any, fragments: Sequence[str] = ()) -> dict[str, list[str]]:
    """The MatMuls int8 leaves in fp32, by reason: the QA output head (tiny, and its output is the
    answer); products of two activations (attention scores and their use where attention is not
    fused, as in DeBERTa: no weight to quantize per channel, and a range that moves with the
    input); and those whose names contain one of ``fragments`` (a family's own choice)."""
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    kept: dict[str, list[str]] = {"head": [], "activations": [], "family": [], "outliers": []}
    for n in graph.node:
        if n.op_type != "MatMul":
            continue
        if _QA_HEAD in n.name:
            kept["head"].append(n.name)
        elif n.name.endswith(OUTLIER_SUFFIX):
            kept["outliers"].append(n.name)
        elif n.input[1] not in constants:
            kept["activations"].append(n.name)
        elif any(f in n.name for f in fragments):
            kept["family"].append(n.name)
    return kept


def _attention_ranges(model_path: Path, feeds: Any, large: bool) -> dict[str, tuple]:
    """Calibrated (min, max) of every Attention node's input."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory() as tmp:
        calibrator = create_calibrator(
            str(model_path),
            op_types_to_calibrate=["Attention"],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
            use_external_data_format=large,
        )
        calibrator.collect_data(feeds)
        data = calibrator.compute_data()
    ranges = {}
    for name in data.data:
        lo, hi = (float(np.asarray(v).ravel()[0]) for v in data[name].range_value)
        ranges[name] = (lo, hi)
    return ranges


def _static_attention(model: Any, ranges: dict[str, tuple]) -> int:
    """Replace each DynamicQuantizeLinear (in front of a QAttention) by a QuantizeLinear with the
    calibrated scale and zero point as constants; the number replaced."""
    from onnx import helper, numpy_helper

    g = model.graph
    nodes, renamed = [], dict[str, str]()
    for node in g.node:
        if node.op_type != "DynamicQuantizeLinear":
            nodes.append(node)
            continue
        x = node.input[0]
        scale, zero = _uint8_qparams(*ranges[x])
        names = (f"{x}_static_scale", f"{x}_static_zero_point")
        g.initializer.extend([numpy_helper.from_array(scale, names[0]), numpy_helper.from_array(zero, names[1])])
        nodes.append(helper.make_node("QuantizeLinear", [x, *names], [node.output[0]], name=f"{node.name}_static"))
        renamed.update(zip(node.output[1:], names))
    for node in nodes:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    del g.node[:]
    g.node.extend(nodes)
    return len(renamed) // 2


def _residuals_to_fp32(model: Any) -> int:
    """Consumers other than MatMul of a quantize-dequantize pair read the fp32 tensor again."""
    g = model.graph
    quantized = {n.output[0]: n.input[0] for n in g.node if n.op_type == "QuantizeLinear"}
    dequantize = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in quantized]
    source = {n.output[0]: quantized[n.input[0]] for n in dequantize}
    rewired = 0
    for node in g.node:
        if node.op_type == "MatMul":
            continue
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
                rewired += 1
    return rewired


def _channel_absmax(model: Any, tensors: list[str], feeds: Any) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of ``tensors`` over the calibration windows."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in tensors)
    with tempfile.TemporaryDirectory() as scratch:
        session = ort.InferenceSession(session_source(probe, Path(scratch)), providers=["CPUExecutionProvider"])
    absmax = {t: np.zeros(0, np.float32) for t in tensors}
    while (feed := feeds.get_next()) is not None:
        for t, x in zip(tensors, session.run(tensors, feed)):
            m = np.abs(x).reshape(-1, x.shape[-1]).max(axis=0)
            absmax[t] = m if absmax[t].size == 0 else np.maximum(absmax[t], m)
    return absmax


def outlier_channels(x_max: np.ndarray, w_max: np.ndarray, most: int, ratio: float = OUTLIER_RATIO) -> np.ndarray:
    """The channels (ascending) whose ``x_max * w_max`` exceeds ``ratio`` times the median
    channel's, the ``most`` largest of them."""
    score = x_max * w_max
    above = np.flatnonzero(score > ratio * np.median(score))
    return np.sort(above[np.argsort(-score[above])][:most])


def _smooth_gelu_inputs(
    model: Any, feeds: Any, alpha: float, outliers: int = 0, ratio: float = OUTLIER_RATIO
) -> tuple[int, int]:
    """SmoothQuant on the MatMuls fed by GELU: divide the GELU output by s per channel (a Mul) and
    multiply the weight's rows by s, s = max|x|^alpha / max|w|^(1 - alpha), so that the widest
    activation channels (outliers) move into the per-channel weights. Same function, flatter
    activations for the per-tensor activation scale. ``outliers``: up to that many channels per
    MatMul, those of :func:`outlier_channels`, leave the int8 product (zero in its input and weight)
    for an fp32 product of their own, added to it. The number of MatMuls smoothed, and of channels
    taken out."""
    from onnx import helper, numpy_helper

    g = model.graph
    gelu = {o for n in g.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
    weights = {i.name: i for i in g.initializer}
    targets = [n for n in g.node if n.op_type == "MatMul" and n.input[0] in gelu and n.input[1] in weights]
    if not targets:
        return 0, 0
    absmax = _channel_absmax(model, sorted({n.input[0] for n in targets}), feeds)
    taken = 0
    nodes: list[Any] = []
    for node in g.node:
        if node in targets:
            w = numpy_helper.to_array(weights[node.input[1]])
            x_max = np.maximum(absmax[node.input[0]], 1e-5)
            w_max = np.maximum(np.abs(w).max(axis=1), 1e-5)
            s = np.clip(x_max**alpha / w_max ** (1 - alpha), 1e-5, None).astype(np.float32)
            inverse = (1.0 / s).astype(np.float32)
            smoothed_w = (w * s[:, None]).astype(np.float32)
            after: list[Any] = []
            picked = outlier_channels(x_max, w_max, outliers, ratio)
            if len(picked):
                taken += len(picked)
                after = _outlier_product(g, node, w, picked)
                inverse[picked] = 0.0
                smoothed_w[picked] = 0.0
            weights[node.input[1]].CopyFrom(numpy_helper.from_array(smoothed_w, node.input[1]))
            inv, smoothed = f"{node.name}_smooth_inv_scale", f"{node.input[0]}_smoothed_{len(nodes)}"
            g.initializer.append(numpy_helper.from_array(inverse, inv))
            nodes.append(helper.make_node("Mul", [node.input[0], inv], [smoothed], name=f"{node.name}_smooth"))
            node.input[0] = smoothed
            nodes.extend([node, *after])
            continue
        nodes.append(node)
    del g.node[:]
    g.node.extend(nodes)
    return len(targets), taken


OUTLIER_SUFFIX = "_outlier_channels"


def _outlier_product(g: Any, node: Any, w: np.ndarray, picked: np.ndarray) -> list[Any]:
    """fp32 ``O = x[..., picked] @ w[picked]``, the nodes computing it, to go right after ``node``.
    Where ``node``'s product ``P`` is read by one ``Add(P, R)`` (a residual) and nothing else (no
    graph output, no subgraph), ``O`` joins ``R`` first -- ``P + (R + O)`` -- so that the bias
    ``Add`` after it can still fold into the int8 product; else ``node`` writes ``P - O`` under
    another name and an ``Add`` restores ``P``."""
    from onnx import helper, numpy_helper

    name = f"{node.name}{OUTLIER_SUFFIX}"
    g.initializer.append(numpy_helper.from_array(picked.astype(np.int64), f"{name}_index"))
    g.initializer.append(numpy_helper.from_array(w[picked].astype(np.float32), f"{name}_weight"))
    constants = {i.name for i in g.initializer}
    product, part = node.output[0], f"{name}_y"
    nodes = [
        helper.make_node("Gather", [node.input[0], f"{name}_index"], [f"{name}_x"], name=f"{name}_gather", axis=-1),
        helper.make_node("MatMul", [f"{name}_x", f"{name}_weight"], [part], name=name),
    ]
    from ._passes import _read_inside

    readers = [n for n in g.node if product in n.input]
    elsewhere = product in {o.name for o in g.output} or any(product in _read_inside(n) for n in g.node)
    if len(readers) == 1 and readers[0].op_type == "Add" and len(set(readers[0].input)) == 2 and not elsewhere:
        add = readers[0]
        slot = 1 - list(add.input).index(product)
        if add.input[slot] not in constants:
            nodes.append(helper.make_node("Add", [add.input[slot], part], [f"{name}_residual"], name=f"{name}_add"))
            add.input[slot] = f"{name}_residual"
            return nodes
    node.output[0] = f"{product}_int8_part"
    return [*nodes, helper.make_node("Add", [node.output[0], part], [product], name=f"{name}_add")]


def _quantized_attention(work: Path, ranges: dict[str, tuple], large: bool) -> tuple[Any, int]:
    """``work/typed.onnx`` with each ``Attention`` as ``QAttention`` (int8 weights per column, the
    input's calibrated ``ranges`` as constant scales): the model, and how many. ``large``: the
    graph is over 2 GB."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        work / "typed.onnx",
        work / "attention.onnx",
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Attention"],
        use_external_data_format=large,
    )
    model = onnx.load(work / "attention.onnx")
    return model, _static_attention(model, ranges)


def quantize_static_int8(
    fp32: Path,
    out: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    *,
    calibration: str = "minmax",
    smooth_alpha: float | None = SMOOTH_ALPHA,
    reduce_range: bool = False,
    keep_fp32: Sequence[str] = (),
    keep_fragments: Sequence[str] = (),
    outliers: int = OUTLIER_CHANNELS,
    outlier_ratio: float = OUTLIER_RATIO,
) -> dict[str, Any]:
    """Static int8 of the optimized fp32 graph at ``fp32``, activation ranges calibrated on ``feeds``
    (batch-of-one model inputs), the GELU-fed MatMuls smoothed with ``smooth_alpha`` (None: not
    smoothed) and up to ``outliers`` outlier channels of each taken out of the int8 product into an
    fp32 one (0: none; ``outlier_ratio`` 0: the largest whether they stand out or not; see
    :func:`outlier_channels`). ``reduce_range``: 7-bit weights (for
    measurements); ``keep_fp32``: names of further MatMuls to leave in fp32 (a ``ValueError`` if
    the graph has no such MatMul); ``keep_fragments``: the family's (see :func:`kept_matmuls`).
    Returns the counts of what was quantized, smoothed, taken apart and kept in fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibration!r}")
    _quiet()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = onnx.load(fp32)
        large = is_large(model)  # over 2 GB: every intermediate graph with external data
        names = _input_names(model)
        smoothed, outlier_count = (
            (0, 0)
            if smooth_alpha is None
            else _smooth_gelu_inputs(model, _Feeds(feeds, names), smooth_alpha, outliers, outlier_ratio)
        )
        save_onnx(_typed(model), work / "typed.onnx")
        del model
        ranges = _attention_ranges(work / "typed.onnx", _Feeds(feeds, names), large)
        model, attention = _quantized_attention(work, ranges, large)
        large = is_large(model)
        save_onnx(_typed(model), work / "attention.onnx")
        kept = kept_matmuls(model.graph, keep_fragments)
        missing = set(keep_fp32) - {n.name for n in model.graph.node if n.op_type == "MatMul"}
        if missing:
            raise ValueError(f"keep_fp32 names MatMuls this graph does not have: {', '.join(sorted(missing))}")
        kept["given"] = [name for name in keep_fp32 if not any(name in names for names in kept.values())]
        head = [name for names in kept.values() for name in names]
        quantize_static(
            work / "attention.onnx",
            work / "static.onnx",
            _Feeds(feeds, names),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=head,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=reduce_range,
            use_external_data_format=large,
            extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul"]},
        )
        model = onnx.load(work / "static.onnx")
        _residuals_to_fp32(model)
        model.ir_version = min(model.ir_version, 10)  # onnxruntime reads up to 13; onnx may write newer
        save_onnx(model, out)
    matmuls = sum(n.op_type == "MatMul" for n in model.graph.node)
    return {
        "attention": attention,
        "matmuls": matmuls - len(head),
        "kept_fp32": len(head),
        "kept": {k: len(v) for k, v in kept.items()},
        "smoothed": smoothed,
        "outliers": {"channels": outlier_count, "matmuls": len(kept["outliers"])},
    }


def quantize_dynamic_int8(fp32: Path, out: Path, keep_fragments: Sequence[str] = ()) -> list[str]:
    """Dynamic int8 quantization, per-channel weights; the MatMuls fed by GELU stay fp32.

    The variant shipped before static quantization (``int8="dynamic"``). Activation scales are
    computed per call, so a window's scores depend slightly on its batch neighbours. On 1,200
    held-out questions of the reference model per-tensor weights lost 2.5 F1 points, per-channel
    0.9, per-channel with the feed-forward output projections kept in fp32 none.
    Returns the names of the MatMuls kept in fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(fp32, load_external_data=False).graph
    kept = gelu_fed_matmuls(graph)
    by_rule = kept_matmuls(graph, keep_fragments)
    kept += [name for name in by_rule["activations"] + by_rule["family"] if name not in kept]
    _quiet()
    large = data_file(fp32).exists()  # the input is over 2 GB: its int8 goes beside its own data file too
    if data_file(out).exists():  # onnx appends to an existing data file
        data_file(out).unlink()
    quantize_dynamic(
        fp32,
        out,
        use_external_data_format=large,
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return kept
