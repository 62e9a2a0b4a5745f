"""Engines side by side, question by question: a slow stretch of the host falls on all of them.

    python benchmarks/paired.py --models electra-base deberta-v3-base \
        --engines pipeline-fp32 optimum-int8 onnxqa-int8 --questions 200 --work /tmp/onnxqa-bench

compare.py times one engine's pass over all the questions, then the next engine's; on a shared
host whose speed drifts by tens of percent for minutes at a time, one engine's pass can fall in a
slow stretch that the next one's misses, and its best-of-rounds only narrows that. Here every
engine is loaded at once, has answered every question once before the clock starts, and then
each question is answered by every engine before the next question, in an order drawn anew for
each question, with a pause between calls so that no engine's idle threads still spin when the
next one starts. Each question's timings then come from the same second of the host.

Per engine: questions/s over the whole set, one question per call (the pipelines' default, and
onnxqa's on CPU: one window per call), or with ``--per-call N`` N consecutive questions per call
(``many``: onnxqa's ``batch()``, which tokenizes and decodes them together and runs their windows
in calls of its batch size; a pipeline or a model-alone engine still one by one), the throughput
that compare.py's passes time, now in turns too. Per engine against each reference engine (the pipeline,
optimum's int8, OpenVINO's compiled model alone): the ratio of their total times (= the ratio of
questions/s) with a 95% interval from resampling blocks of consecutive questions (a block
bootstrap: the host's drift is correlated in time), and the median per-question ratio. A
model-alone engine (``openvino-int8-alone`` ...) runs its compiled model on onnxqa's windows of the
question, tokenized in the untimed pass, and decodes nothing: its "questions/s" is the model's
alone on the same windows, the yardstick for onnxqa end to end. Engines, models and the work
directory are compare.py's (``--work`` reuses its checkpoints and exports).
Writes benchmarks/results/<name>.json and, with ``--section``, a table into ``--markdown``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, SEEDS, SHARED, log, machine_name, markers, squad_pairs, write_section
from compare import ENGINES, FAMILY_MODELS, MODEL_ALONE, build_engines, model_checkpoint

REFERENCES = ("pipeline-fp32", "optimum-int8", *MODEL_ALONE)
PAUSE_S = 0.05  # between calls: longer than an idle thread pool spins (onnxruntime's, GNU OpenMP's in torch)
RESAMPLES = 2000
BLOCK = 10  # questions per resampled block
TITLES = {"pipeline-fp32": "pipeline", "optimum-int8": "optimum int8"}


def timed_questions(engines: dict[str, Any], pairs: list[tuple[str, str]], per_call: int = 1) -> dict[str, list[float]]:
    """Seconds per call for each engine, ``per_call`` consecutive questions a call (one: the
    engine's ``one``; more: its ``many``), the engines' order drawn anew for each call (so that no
    engine always follows the same one)."""
    names = list(engines)
    order = np.random.default_rng(0)
    calls = [pairs[i : i + per_call] for i in range(0, len(pairs), per_call)]
    seconds: dict[str, list[float]] = {name: [0.0] * len(calls) for name in names}
    for i, call in enumerate(calls):
        for k in order.permutation(len(names)):
            name = names[k]
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            if per_call == 1:
                engines[name].one(*call[0])
            else:
                engines[name].many(call)
            seconds[name][i] = time.perf_counter() - t0
    return seconds


def ratio(
    reference: list[float], engine: list[float], rng: np.random.Generator, block: int = BLOCK
) -> dict[str, float]:
    """How many times faster ``engine`` is than ``reference`` (seconds per call, call by call):
    total-time ratio, its 95% interval from resampling blocks of ``block`` consecutive calls, and
    the median per-call ratio."""
    ref, eng = np.asarray(reference), np.asarray(engine)
    block = min(block, len(ref))
    starts = rng.integers(0, len(ref) - block + 1, size=(RESAMPLES, -(-len(ref) // block)))
    picks = (starts[:, :, None] + np.arange(block)).reshape(RESAMPLES, -1)
    resampled = ref[picks].sum(axis=1) / eng[picks].sum(axis=1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    return {
        "total": float(ref.sum() / eng.sum()),
        "low": float(low),
        "high": float(high),
        "median_per_question": float(np.median(ref / eng)),
    }


def measure(
    model: str, wanted: tuple[str, ...], pairs: list[tuple[str, str]], work: Path, per_call: int = 1
) -> dict[str, Any]:
    checkpoint = work / model / "checkpoint"
    if not (checkpoint / "config.json").is_file():
        checkpoint = model_checkpoint(model, checkpoint)
    factories = build_engines(checkpoint, work / model, wanted)
    engines, skipped = {}, []
    for name in wanted:
        if name not in factories:
            skipped.append(f"{name}: not available here")
            continue
        log(f"{model}: loading {name}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                engine = factories[name]()
                # every engine answers every question once before the clock (OpenVINO compiles
                # kernels per window shape; the others allocate for new shapes)
                for question, context in pairs:
                    engine.one(question, context)
        except ImportError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        engines[name] = engine
    log(f"{model}: {len(pairs)} questions, {per_call} a call, each call by {len(engines)} engines in turn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = timed_questions(engines, pairs, per_call)
    block = max(1, BLOCK // per_call)  # calls per resampled block: about BLOCK questions
    rng = np.random.default_rng(0)
    row: dict[str, Any] = {"engines": {}, "skipped": skipped, "tuned": factories.get("_tuned")}
    for name, times in seconds.items():
        entry: dict[str, Any] = {"questions_per_s": len(pairs) / sum(times), "seconds": times}
        entry["vs"] = {
            ref: ratio(seconds[ref], times, rng, block) for ref in REFERENCES if ref in seconds and ref != name
        }
        row["engines"][name] = entry
        log(f"  {name}: {entry['questions_per_s']:.2f} q/s")
    engines.clear()
    gc.collect()
    return row


def report(result: dict[str, Any], json_path: Path) -> str:
    m = result["machine"]
    present = {name for row in result["models"].values() for name in row["engines"]}
    refs = [r for r in REFERENCES if r in present]
    flags = ", ".join(f"{k} {'yes' if m.get(k) else 'no'}" for k in ("avx512_vnni", "amx_int8"))
    per_call = result["settings"].get("per_call", 1)
    calls = (
        "one question per call; × = total-time ratio with its 95% interval (bootstrap over blocks of "
        f"{BLOCK} consecutive questions) and, in brackets, the median per-question ratio."
        if per_call == 1
        else f"{per_call} consecutive questions per call (onnxqa's batch(), a pipeline's or OpenVINO's model "
        "alone one by one); × = total-time ratio with its 95% interval (bootstrap over blocks of "
        f"{max(1, BLOCK // per_call)} consecutive calls) and, in brackets, the median per-call ratio."
    )
    lines = [
        f"Measured by `python benchmarks/paired.py` on {result['date']}: {m['cpu']}, {m['logical_cores']} cores "
        f"({flags}), onnxruntime {m.get('onnxruntime', '?')}. Raw numbers: `benchmarks/results/{json_path.name}`.",
        f"The first {result['settings']['questions']} questions of SQuAD 2.0 dev, each call answered by every "
        "engine in turn (in an order drawn for each call), after one untimed answer to every question; " + calls,
        "",
        "| model | engine | questions/s | " + " | ".join(f"× {TITLES.get(r, r)}" for r in refs) + " |",
        "|---|---|---:|" + "---:|" * len(refs),
    ]
    for model, row in result["models"].items():
        for name, e in row["engines"].items():
            cells = []
            for ref in refs:
                r = e["vs"].get(ref)
                cells.append(
                    "1.00"
                    if name == ref
                    else f"**{r['total']:.2f}** ({r['low']:.2f}–{r['high']:.2f}) [{r['median_per_question']:.2f}]"
                    if r
                    else "–"
                )
            lines.append(f"| {model} | {name} | {e['questions_per_s']:.2f} | " + " | ".join(cells) + " |")
    tuned = [f"{model}: {row['tuned']}" for model, row in result["models"].items() if row.get("tuned")]
    if tuned:
        lines += ["", "`onnxqa tune` chose: " + "; ".join(tuned) + "."]
    skipped = [f"{model}: {s}" for model, row in result["models"].items() for s in row["skipped"]]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", required=True, choices=[*SEEDS, *FAMILY_MODELS])
    ap.add_argument("--engines", nargs="+", default=["pipeline-fp32", "optimum-int8", "onnxqa-int8"], choices=ENGINES)
    ap.add_argument("--questions", type=int, default=200, help="questions, each timed on every engine (default 200)")
    ap.add_argument("--work", metavar="DIR", help="compare.py's work directory to reuse (default: a temporary one)")
    ap.add_argument(
        "--per-call",
        type=int,
        default=1,
        help="consecutive questions in one call (default 1): more measure throughput, as compare.py's passes do",
    )
    ap.add_argument("--name", help="results file name (default: paired-<machine>)")
    ap.add_argument("--markdown", help="a markdown file to write the table into (with --section)")
    ap.add_argument("--section", default="", help="write between the markers 'paired.py SECTION'")
    args = ap.parse_args()
    if args.questions < 2:
        ap.error("--questions must be at least 2")
    if not 1 <= args.per_call <= args.questions // 2:
        ap.error("--per-call must be at least 1 and leave at least two calls")
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs the seed configs and SQuAD data in ../shared")
    from onnxqa.bench import machine_facts

    facts = machine_facts()
    result: dict[str, Any] = {
        "machine": facts,
        "date": time.strftime("%Y-%m-%d"),
        "settings": vars(args).copy(),
        "pause_s": PAUSE_S,
        "models": {},
    }
    pairs = squad_pairs(args.questions)
    json_path = RESULTS / f"{args.name or 'paired-' + machine_name(facts)}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    keep = contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory(prefix="onnxqa-paired-")
    with keep as tmp:
        for model in args.models:
            result["models"][model] = measure(model, tuple(args.engines), pairs, Path(tmp), args.per_call)
            json_path.write_text(json.dumps(result, indent=2))
    text = report(result, json_path)
    print(text)
    if args.markdown:
        start, end = markers(f"paired.py {args.section}".strip())
        write_section(Path(args.markdown), text, start, end)
    log(f"wrote {json_path}" + (f", {args.markdown}" if args.markdown else ""))


if __name__ == "__main__":
    main()
