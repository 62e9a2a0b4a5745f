"""What taking ``SkipLayerNormalization`` and ``BiasGelu`` apart is worth, end to end, on exported
model directories: each variant loaded twice with ``onnxqa.load`` — as exported, and with the
``Add`` + ``LayerNormalization`` and ``Add`` + ``Gelu`` of the passes fused back into
onnxruntime's ``SkipLayerNormalization`` and ``BiasGelu`` (the graph as it was before the passes;
everything else, quantization included, the same) — timed in turns on the same SQuAD 2.0
questions, with the kernel time by operator type from onnxruntime's profiler.

    python benchmarks/kernels_apart.py MODEL_DIR [MODEL_DIR ...] [--questions 100] [--rounds 3]

Writes benchmarks/results/kernels-apart-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, kernel_us, log, machine_name, squad_pairs


def _fuse_back(model: Any) -> dict[str, int]:
    """The inverse of the passes ``unfuse_skip_layer_norm`` / ``unfuse_bias_gelu`` on ``model``:
    ``Add`` (+ ``Add`` of a constant bias) + ``LayerNormalization`` -> ``SkipLayerNormalization``
    (its sum output kept where something else reads it), ``Add`` of a constant + ``Gelu`` ->
    ``BiasGelu``."""
    from onnx import helper

    g = model.graph
    consts = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    drop, replace, counts = set(), {}, {"SkipLayerNormalization": 0, "BiasGelu": 0}
    for n in g.node:
        add = producer.get(n.input[0]) if n.input else None
        if add is None or add.op_type != "Add":
            continue
        if n.op_type == "LayerNormalization" and n.domain in ("", "ai.onnx"):
            bias, first = "", add
            if add.input[1] in consts and producer.get(add.input[0]) is not None:
                inner = producer[add.input[0]]
                if inner.op_type == "Add" and readers[add.input[0]] == 1:
                    bias, first = add.input[1], inner
                    drop.add(id(inner))
            inputs = [first.input[0], first.input[1], n.input[1], n.input[2] if len(n.input) > 2 else "", bias]
            total = add.output[0]
            outputs = [n.output[0], "", "", total] if readers[total] > 1 else [n.output[0]]
            epsilon = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-12)
            replace[id(n)] = helper.make_node(
                "SkipLayerNormalization", inputs, outputs, name=f"{n.name}_fused", domain="com.microsoft"
            )
            replace[id(n)].attribute.append(helper.make_attribute("epsilon", epsilon))
            drop.add(id(add))
            counts["SkipLayerNormalization"] += 1
        elif n.op_type == "Gelu" and add.input[1] in consts and readers[add.output[0]] == 1:
            replace[id(n)] = helper.make_node(
                "BiasGelu", list(add.input), [n.output[0]], name=n.name + "_fused", domain="com.microsoft"
            )
            drop.add(id(add))
            counts["BiasGelu"] += 1
    nodes = [replace.get(id(n), n) for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(nodes)
    return counts


def _fused_copy(model_dir: Path, into: Path) -> Path:
    """``model_dir`` with its CPU graphs fused back (see ``_fuse_back``), hashed in its manifest."""
    import onnx

    from onnxqa._manifest import sha256_file

    copy = into / model_dir.name
    copy.mkdir()
    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    shutil.copy(model_dir / manifest["tokenizer"]["file"], copy)
    for variant in manifest["variants"].values():
        model = onnx.load(model_dir / variant["file"])
        log(f"  {model_dir.name} {variant['file']}: fused back {_fuse_back(model)}")
        onnx.save(model, copy / variant["file"])
        variant["sha256"] = sha256_file(copy / variant["file"])
        variant.pop("disabled_optimizers", None)
    (copy / "onnxqa.json").write_text(json.dumps(manifest))
    return copy


def _kernel_ms(qa: Any, pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Milliseconds of kernel time per question by operator type (a profiled session of its own)."""
    import numpy as np
    import onnxruntime as ort

    from onnxqa.runtime import Windower

    engine = qa.engine
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        variant = qa.manifest["variants"][qa.precision]
        session = ort.InferenceSession(
            str(qa.model_dir / variant["file"]),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(variant.get("disabled_optimizers", [])),
        )
        tok = qa.manifest["tokenizer"]
        windower = Windower((qa.model_dir / tok["file"]).read_text(encoding="utf-8"), tok.get("cls_token_id"))
        for w in windower.windows(pairs, max_seq_len=384, doc_stride=128, max_question_len=64):
            feed = {"input_ids": w.input_ids[None], "attention_mask": np.ones_like(w.input_ids[None])}
            if "token_type_ids" in engine.input_names:
                feed["token_type_ids"] = w.type_ids[None]
            session.run(None, feed)
        by_op = kernel_us(session.end_profiling())
    return {op: us / 1000 / len(pairs) for op, us in by_op.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["int8", "fp32"])
    args = parser.parse_args()
    import onnxqa
    from onnxqa.bench import machine_facts

    facts = machine_facts()
    pairs = squad_pairs(args.questions)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_dir in args.model_dirs:
            fused_dir = _fused_copy(model_dir, Path(tmp))
            for precision in args.precision:
                runs = {
                    "apart": onnxqa.load(model_dir, device="cpu", precision=precision, threads=2),
                    "fused": onnxqa.load(fused_dir, device="cpu", precision=precision, threads=2),
                }
                rate: dict[str, float] = {}
                for qa in runs.values():
                    qa.batch(pairs[:5])
                for _ in range(args.rounds):  # in turns; the best round of each kept
                    for name, qa in runs.items():
                        t0 = time.perf_counter()
                        qa.batch(pairs)
                        rate[name] = max(rate.get(name, 0.0), len(pairs) / (time.perf_counter() - t0))
                same = sum(
                    (a[0].start, a[0].end) == (b[0].start, b[0].end)
                    for a, b in zip(runs["apart"].batch(pairs), runs["fused"].batch(pairs))
                )
                entry = {
                    "model": model_dir.name,
                    "precision": precision,
                    "questions_per_s": rate,
                    "speedup": rate["apart"] / rate["fused"],
                    "same_answers": same,
                    "kernel_ms_per_question": {name: _kernel_ms(qa, pairs[:20]) for name, qa in runs.items()},
                }
                log(
                    f"{model_dir.name} {precision}: apart {rate['apart']:.1f} q/s, fused {rate['fused']:.1f} q/s "
                    f"({entry['speedup']:.3f}x); same answers {same}/{len(pairs)}"
                )
                results.append(entry)
                for qa in runs.values():
                    qa.close()
    out = RESULTS / f"kernels-apart-{machine_name(facts, 3)}.json"
    out.write_text(json.dumps({"machine": facts, "date": time.strftime("%Y-%m-%d"), "results": results}, indent=2))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
