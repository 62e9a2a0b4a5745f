"""Where the time goes: onnxruntime's per-operator profile of one model directory, by operator type.

    python benchmarks/profile_ops.py MODEL_DIR [--precision int8] [--questions 40]

Runs the first N SQuAD 2.0 dev questions through onnxqa with onnxruntime profiling on, and
prints the share of kernel time per operator type, plus the share of wall time spent outside
the session (tokenization, windows, decoding).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import onnxruntime as ort

import onnxqa
from onnxqa.squad import load_squad

SHARED = Path(__file__).resolve().parents[2] / "shared"
OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--questions", type=int, default=40)
    args = ap.parse_args()
    _, questions = load_squad(SHARED / "data" / "squad" / "dev-v2.0.json")
    pairs = [(q.question, q.context) for q in questions[: args.questions]]

    qa = onnxqa.load(args.model_dir, device="cpu", precision=args.precision)
    qa.batch(pairs[:4])
    t0 = time.perf_counter()
    qa.batch(pairs)
    wall = time.perf_counter() - t0
    session_time = 0.0
    run = qa._engine.session.run

    def timed(*a, **k):  # type: ignore[no-untyped-def]
        nonlocal session_time
        t = time.perf_counter()
        out = run(*a, **k)
        session_time += time.perf_counter() - t
        return out

    qa._engine.session.run = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    qa.batch(pairs)
    wall2 = time.perf_counter() - t0

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    OUT.mkdir(parents=True, exist_ok=True)  # an ignored folder: profiles are run outputs, never committed
    opts.profile_file_prefix = str(OUT / "onnxruntime_profile")
    manifest = json.loads((Path(args.model_dir) / "onnxqa.json").read_text())
    sess = ort.InferenceSession(
        str(Path(args.model_dir) / manifest["variants"][args.precision]["file"]),
        opts,
        providers=["CPUExecutionProvider"],
    )
    names = [i.name for i in sess.get_inputs()]
    for w in qa._windower.windows(pairs, max_seq_len=384, doc_stride=128, max_question_len=64):
        feed = {
            "input_ids": w.input_ids[None],
            "attention_mask": (w.input_ids * 0 + 1)[None],
            "token_type_ids": w.type_ids[None],
        }
        sess.run(None, {k: feed[k] for k in names})
    trace = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    print(
        f"{args.model_dir} {args.precision}: {len(pairs)} questions in {wall:.2f}s; "
        f"inside the session {100 * session_time / wall2:.1f}% of wall time, outside "
        f"(tokenize, windows, decode) {100 * (1 - session_time / wall2):.1f}%"
    )
    print("| operator | share of kernel time |")
    print("|---|---:|")
    for op, dur in by_op.most_common(8):
        print(f"| {op} | {100 * dur / total:.1f}% |")


if __name__ == "__main__":
    main()
