"""More rewrites of the onnxruntime int8 graph, measured before any is shipped: each exported
``model.int8.onnx`` against copies with

- ``qattention_apart``: each ``QAttention`` (int8 Q, K, V products computed per head, attention
  core in fp32) -> one ``MatMulIntegerToFloat`` for the packed QKV product, its bias folded in, a
  ``Split`` and ``MultiHeadAttention`` (the fp32 attention core, the same mask);
- ``bias_in_matmul``: a quantize-dequantize ``MatMul`` followed by the ``Add`` of a constant bias
  -> ``MatMulIntegerToFloat`` with the bias as its input (what onnxruntime builds from the QDQ
  pair at load, less one element-wise pass); shipped since as the export's
  ``fold_bias_into_int8_matmul``, so it finds nothing in exports of this version;
- ``smoothing_into_quantize``: SmoothQuant's per-channel ``Mul`` before a per-tensor
  ``QuantizeLinear`` -> one ``QuantizeLinear`` with a scale per channel (the same int8 values but
  for rounding: its logits may differ by a step of int8 here and there);
- both of the first two.

Every copy must give the same logits (the largest absolute difference is reported); each is timed
in turns with the shipped graph (2 threads, batch of one, the windows of the first N SQuAD 2.0 dev
questions, best of the rounds), in sessions without the optimizers the manifest lists, as the
runtime creates them, and profiled by operator type in turns too: the sum of kernel times is
steadier than wall time on a shared host. The rewrites match operator patterns, so
they apply to every family whose attention onnxruntime fuses.

    python benchmarks/int8_rewrites.py MODEL_DIR [MODEL_DIR ...] [--questions 100] [--rounds 3]

Writes benchmarks/results/int8-rewrites-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, ROOT, cpu_session, kernel_us, log, machine_name, squad_pairs

MS = "com.microsoft"


def qattention_apart(model: Any) -> int:
    """``QAttention`` -> ``MatMulIntegerToFloat`` (QKV, bias) + ``Split`` + ``MultiHeadAttention``.
    Only a bidirectional one without past state, as an encoder's."""
    from onnx import helper, numpy_helper

    graph, nodes, done = model.graph, [], 0
    for node in graph.node:
        causal = any(a.name in ("unidirectional", "do_rotary") and a.i for a in node.attribute)
        if node.op_type != "QAttention" or causal or (len(node.input) > 8 and node.input[8]):
            nodes.append(node)
            continue
        x, w, bias, x_scale, w_scale, mask, x_zero, w_zero = [*node.input, "", ""][:8]
        name = node.name or node.output[0]
        qkv, q, k, v = (f"{name}_{s}" for s in ("qkv", "q", "k", "v"))
        nodes.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [x, w, x_scale, w_scale, x_zero, w_zero, bias],
                [qkv],
                name=f"{name}_qkv_matmul",
                domain=MS,
            )
        )
        hidden = next(i for i in graph.initializer if i.name == bias).dims[0] // 3
        graph.initializer.append(numpy_helper.from_array(np.array([hidden] * 3, np.int64), f"{name}_sizes"))
        nodes.append(helper.make_node("Split", [qkv, f"{name}_sizes"], [q, k, v], name=f"{name}_split", axis=-1))
        mha = helper.make_node(
            "MultiHeadAttention", [q, k, v, "", mask], [node.output[0]], name=f"{name}_mha", domain=MS
        )
        mha.attribute.extend(a for a in node.attribute if a.name in ("num_heads", "mask_filter_value", "scale"))
        nodes.append(mha)
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return done


def bias_in_matmul(model: Any) -> int:
    """The export's own pass since it was measured here (MobileBERT: 1.15x); an export of this
    version has nothing left for it to fold."""
    from onnxqa.export._passes import fold_bias_into_int8_matmul

    return fold_bias_into_int8_matmul(model)


def smoothing_into_quantize(model: Any) -> int:
    """``Mul(x, m)`` by a constant vector over the last axis, read only by a per-tensor
    ``QuantizeLinear(., s, z)`` -> ``QuantizeLinear(x, s / m, z)`` per channel of the last axis:
    the same int8 input but for rounding, one element-wise pass less. SmoothQuant's ``Mul`` sits
    after a GELU (the export smooths only GELU-fed MatMuls), so it cannot go into a layer norm's
    weights; this is the other place it could go."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    done, dropped = 0, set()
    for mul in [n for n in graph.node if n.op_type == "Mul"]:
        m = constants.get(mul.input[1])
        after = readers.get(mul.output[0], [])
        if m is None or m.ndim != 1 or len(after) != 1 or after[0].op_type != "QuantizeLinear":
            continue
        quantize = after[0]
        scale, zero = constants[quantize.input[1]], constants[quantize.input[2]]
        if scale.ndim or zero.ndim:
            continue
        with np.errstate(divide="ignore"):  # a zeroed channel: scale inf, quantized to the zero point
            per_channel = (scale / m).astype(np.float32)
        name = f"{quantize.name or quantize.output[0]}_per_channel"
        graph.initializer.extend(
            [
                numpy_helper.from_array(per_channel, f"{name}_scale"),
                numpy_helper.from_array(np.full(m.shape, zero, dtype=zero.dtype), f"{name}_zero"),
            ]
        )
        replacement = helper.make_node(
            "QuantizeLinear", [mul.input[0], f"{name}_scale", f"{name}_zero"], list(quantize.output), name=name, axis=-1
        )
        quantize.CopyFrom(replacement)
        dropped.add(id(mul))
        done += 1
    kept = [n for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return done


REWRITES = {
    "qattention_apart": [qattention_apart],
    "bias_in_matmul": [bias_in_matmul],
    "smoothing_into_quantize": [smoothing_into_quantize],
}
REWRITES["both"] = REWRITES["qattention_apart"] + REWRITES["bias_in_matmul"]


def _padded(feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batch-of-one ``feeds`` as one batch, padded at the end to the longest (mask 0)."""
    longest = max(f["input_ids"].shape[1] for f in feeds)
    return {k: np.concatenate([np.pad(f[k], ((0, 0), (0, longest - f[k].shape[1]))) for f in feeds]) for k in feeds[0]}


def _rate(session: Any, feeds: list[dict[str, np.ndarray]]) -> float:
    t0 = time.perf_counter()
    for f in feeds:
        session.run(None, f)
    return len(feeds) / (time.perf_counter() - t0)


def _kernels(path: Path, feeds: list[dict[str, np.ndarray]], disabled: list[str], scratch: Path) -> dict[str, float]:
    """Kernel milliseconds per window by operator type (the six largest) and in all ("total"):
    onnxruntime's profile, steadier than wall time on a shared host."""
    session = cpu_session(path, disabled, scratch)
    session.run(None, feeds[0])  # the cold run: its events are left out
    for f in feeds:
        session.run(None, f)
    by_op = kernel_us(session.end_profiling(), after_first_run=True)
    ms = {op: round(us / 1000 / len(feeds), 2) for op, us in by_op.most_common(6)}
    return {**ms, "total": round(sum(by_op.values()) / 1000 / len(feeds), 2)}


def int8_windows(model_dir: Path, questions: int) -> tuple[dict[str, Any], list[str], list[dict[str, np.ndarray]]]:
    """``model_dir``'s manifest, the optimizers its int8 sessions run without, and the model inputs
    of the windows of the first ``questions`` SQuAD 2.0 dev questions, one window each."""
    from onnxqa.export._checks import model_inputs
    from onnxqa.runtime import Windower

    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    disabled = manifest["variants"]["int8"].get("disabled_optimizers", [])
    windower = Windower((model_dir / "tokenizer.json").read_text(), manifest["tokenizer"]["cls_token_id"])
    feeds = model_inputs(windower, squad_pairs(questions), manifest["architecture"]["uses_token_type_ids"])
    return manifest, disabled, feeds


def measure(model_dir: Path, questions: int, rounds: int) -> dict[str, Any]:
    import onnx

    _, disabled, feeds = int8_windows(model_dir, questions)
    result: dict[str, Any] = {"model": str(model_dir), "windows": len(feeds)}
    with tempfile.TemporaryDirectory(prefix="onnxqa-rewrites-") as tmp:
        work = Path(tmp)
        files = {"shipped": model_dir / "model.int8.onnx"}
        result["rewritten"] = {}
        for name, passes in REWRITES.items():
            model = onnx.load(files["shipped"])
            result["rewritten"][name] = {p.__name__: p(model) for p in passes}
            files[name] = work / f"{name}.onnx"
            onnx.save(model, files[name])
        sessions = {name: cpu_session(path, disabled) for name, path in files.items()}
        names = {i.name for i in sessions["shipped"].get_inputs()}
        feeds = [{k: v for k, v in f.items() if k in names} for f in feeds]
        checked = [*feeds, _padded(feeds[:4])]  # every window, and windows padded in one batch
        reference = [sessions["shipped"].run(None, f) for f in checked]
        result["max_abs_diff"] = {
            name: max(
                float(np.abs((a - b)[f["attention_mask"] == 1]).max())
                for f, ref in zip(checked, reference)
                for a, b in zip(ref, s.run(None, f))
            )
            for name, s in sessions.items()
        }
        for s in sessions.values():
            _rate(s, feeds[:10])
        rates: dict[str, float] = {}
        for _ in range(rounds):  # in turns, the best of each kept
            for name, s in sessions.items():
                rates[name] = max(rates.get(name, 0.0), _rate(s, feeds))
        result["windows_per_s"] = {k: round(v, 2) for k, v in rates.items()}
        result["x_shipped"] = {k: round(v / rates["shipped"], 3) for k, v in rates.items()}
        del sessions
        kernels: dict[str, dict[str, float]] = {}
        for _ in range(rounds):  # in turns, the profile with the least kernel time kept
            for name, path in files.items():
                profile = _kernels(path, feeds, disabled, work)
                if name not in kernels or profile["total"] < kernels[name]["total"]:
                    kernels[name] = profile
        result["kernel_ms_per_window"] = kernels
        total = {name: k["total"] for name, k in kernels.items()}
        result["kernel_x_shipped"] = {k: round(total["shipped"] / v, 3) for k, v in total.items()}
    return result


def over_model_dirs(description: str, measure: Any, stem: str) -> dict[str, Any]:
    """The command line of a script that measures exported directories one by one (``MODEL_DIR ...
    --questions N --rounds R``): ``measure(dir, questions, rounds)`` of each, logged, written to
    ``benchmarks/results/<stem>-<machine>.json`` with the machine and date; returns that record."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dirs", nargs="+", type=Path)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from onnxqa.bench import machine_facts

    facts = machine_facts()
    out: dict[str, Any] = {"machine": facts, "date": time.strftime("%Y-%m-%d"), "models": []}
    for model_dir in args.model_dirs:
        log(f"{model_dir}")
        out["models"].append(measure(model_dir, args.questions, args.rounds))
        log(json.dumps(out["models"][-1]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stem}-{machine_name(facts, 3)}.json"
    path.write_text(json.dumps(out, indent=2))
    log(f"wrote {path}")
    return out


def main() -> None:
    out = over_model_dirs(__doc__ or "", measure, "int8-rewrites")
    print("× the shipped graph: windows/s (wall time) · kernel time")
    print(f"| model | {' | '.join(REWRITES)} |\n|---|{'---:|' * len(REWRITES)}")
    for m in out["models"]:
        cells = [f"{m['x_shipped'][k]:.3f}× · {m['kernel_x_shipped'][k]:.3f}×" for k in REWRITES]
        print(f"| {m['model']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    main()
