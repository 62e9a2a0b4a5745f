"""Where the time goes: onnxruntime's per-operator profile of one model directory, by operator type.

    python benchmarks/profile_ops.py MODEL_DIR [--precision int8] [--questions 40]

Runs the first N SQuAD 2.0 dev questions through onnxqa and reports the share of wall time spent in
the model (the runtime's stage listener) and outside it (tokenization, windows, padding, decoding).
Then runs the same variant's graph in an onnxruntime session of its own with profiling on, one
window per call at the lengths onnxqa cut the questions into, and prints the share of kernel time
per operator type.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import onnxqa
from common import kernel_us, squad_pairs, stage_seconds

OUT = Path(__file__).resolve().parent / "out"


def operator_shares(model_file: Path, lengths: list[int], disabled: list[str]) -> collections.Counter[str]:
    """Kernel microseconds per operator type over one call per window length (inputs of one token
    id: kernels do the same work whatever the ids)."""
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    OUT.mkdir(parents=True, exist_ok=True)  # an ignored folder: profiles are run outputs, never committed
    opts.profile_file_prefix = str(OUT / "onnxruntime_profile")
    # without the optimizers the manifest keeps out, as the runtime creates its sessions
    sess = ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    names = [i.name for i in sess.get_inputs()]
    for n in lengths:
        ids = np.ones((1, n), dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        sess.run(None, {k: feed[k] for k in names})
    return kernel_us(sess.end_profiling())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--questions", type=int, default=40)
    args = ap.parse_args()
    pairs = squad_pairs(args.questions)

    qa = onnxqa.load(args.model_dir, device="cpu", precision=args.precision)
    qa.batch(pairs[:4])
    with stage_seconds(qa) as spent:
        t0 = time.perf_counter()
        qa.batch(pairs)
        wall = time.perf_counter() - t0
    inside = spent["model"] / wall

    manifest = json.loads((Path(args.model_dir) / "onnxqa.json").read_text())
    variant = manifest["variants"][qa.precision]
    model_file = Path(args.model_dir) / variant["file"]
    by_op = operator_shares(model_file, qa.window_lengths(pairs), variant.get("disabled_optimizers", []))
    total = sum(by_op.values())
    print(
        f"{args.model_dir} {qa.precision}: {len(pairs)} questions in {wall:.2f}s; "
        f"inside the model {100 * inside:.1f}% of wall time, outside "
        f"(tokenize, windows, pad, decode) {100 * (1 - inside):.1f}%"
    )
    print("| operator | share of kernel time |")
    print("|---|---:|")
    for op, dur in by_op.most_common(8):
        print(f"| {op} | {100 * dur / total:.1f}% |")


if __name__ == "__main__":
    main()
