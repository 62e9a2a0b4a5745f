"""onnxqa on a GPU, in one process: speed of every configuration next to the PyTorch fp16 pipeline,
where the time goes, and fp16 accuracy against fp32 on the reference model.

    python benchmarks/gpu.py                          # everything (needs the CUDA execution provider)
    python benchmarks/gpu.py --models tinybert-6l-768d-squad2 tinyroberta-squad2 --no-accuracy
    python benchmarks/gpu.py --no-speed               # only the reference model's fp16 vs fp32
    python benchmarks/gpu.py --dry-run                # CPU provider, bert-tiny, 20 questions: checks the script
    python benchmarks/gpu.py --report-only benchmarks/results/gpu-nvidia-h100-80gb-hbm3.json

Engines, on each seed architecture (random weights; speed does not depend on their values):
  onnxqa-fp16-graphs    fp16, shape buckets, one CUDA graph per bucket shape (cuda_graph=True)
  onnxqa-fp16-buckets   fp16, shape buckets, no graphs (the CUDA default)
  onnxqa-fp16-plain     fp16, no buckets: each batch padded to its longest window
  onnxqa-fp32-graphs    fp32, buckets and graphs
  onnxqa-fp32-plain     fp32, no buckets
  pipeline-fp16         the transformers 4.57 question-answering pipeline on PyTorch fp16, device 0
Measured: single-question latency p50/p99, end to end (text in, answer out); throughput on the
first N SQuAD 2.0 dev questions at the best of several batch sizes; effective TFLOP/s (encoder
FLOPs of the real, unpadded tokens / wall time) against the GPU's dense fp16 peak; where a batch's
time goes (the runtime's stages: tokenize, pad, model, decode, assemble; and one model call split into
host-to-device copy, kernels, device-to-host copy). On
the reference model: fp16 and fp32 answers on all held-out questions (equal answers, official F1).
Results are saved after every model (a later run with other --models adds to the same file):
benchmarks/results/gpu-<gpu>.json, and the tables go into BENCHMARKS.md's GPU section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import (
    HELDOUT,
    REFERENCE,
    RESULTS,
    ROOT,
    SEEDS,
    SHARED,
    architecture,
    cuda_available,
    log,
    markers,
    squad,
    squad_pairs,
    stage_seconds,
    window_flops,
    write_section,
)

torch: Any = None  # imported by main() before any session: see import_torch


def import_torch() -> None:
    """Import torch, if installed, before the first CUDA session: a CUDA build of torch loads the
    CUDA / cuDNN libraries onnxruntime-gpu needs. Without it the peer and the measured peak say so."""
    global torch
    try:
        import torch as module
    except ImportError:  # pragma: no cover
        module = None
    torch = module


ONNXQA = {
    "onnxqa-fp16-graphs": {"precision": "fp16", "cuda_graph": True},
    "onnxqa-fp16-buckets": {"precision": "fp16", "buckets": True},
    "onnxqa-fp16-plain": {"precision": "fp16", "buckets": False},
    "onnxqa-fp32-graphs": {"precision": "fp32", "cuda_graph": True},
    "onnxqa-fp32-plain": {"precision": "fp32", "buckets": False},
}
DRY_RUN = {  # the CPU provider has neither fp16 nor graphs: the same code paths, on fp32
    "onnxqa-fp32-buckets": {"precision": "fp32", "buckets": True},
    "onnxqa-fp32-plain": {"precision": "fp32", "buckets": False},
}
PEER = "pipeline-fp16"
ENGINES = tuple(dict.fromkeys((*ONNXQA, *DRY_RUN, PEER)))
# dense fp16 tensor-core peak (TFLOP/s, no sparsity), from NVIDIA's data sheets; more specific names first
FP16_PEAK = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    ("H800", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
    ("A10", 125.0),
)
SIX_BY_768 = {"layers": 6, "hidden": 768}
START, END = markers("gpu.py")


# ---------------------------------------------------------------- the machine


def table_peak(gpu_name: str) -> float | None:
    for key, tflops in FP16_PEAK:
        if key.lower() in gpu_name.lower():
            return tflops
    return None


def measured_peak(seconds: float = 2.0) -> float | None:
    """TFLOP/s of one large fp16 matmul in torch (what the tensor cores give in practice)."""
    if torch is None or not torch.cuda.is_available():
        return None
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    runs, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        runs += 1
        if runs % 10 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    return 2 * n**3 * runs / (time.perf_counter() - t0) / 1e12


def _nvidia_smi() -> dict[str, str]:
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        head = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    facts = dict(zip(query.split(","), [v.strip() for v in out.splitlines()[0].split(",")])) if out else {}
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", head)
    if cuda:
        facts["driver_cuda"] = cuda.group(1)
    return facts


def gpu_facts(dry_run: bool) -> dict[str, Any]:
    import onnxruntime as ort

    from onnxqa.bench import machine_facts

    facts: dict[str, Any] = {
        "cpu": machine_facts()["cpu"],
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    facts["onnxruntime"] = ort.__version__
    facts["onnxruntime_cuda"] = str(getattr(ort, "cuda_version", "") or "") or None
    facts["providers"] = ort.get_available_providers()
    smi = _nvidia_smi()
    facts["gpu"] = smi.get("name") or (torch.cuda.get_device_name(0) if torch and torch.cuda.is_available() else None)
    facts["driver"] = smi.get("driver_version")
    facts["driver_cuda"] = smi.get("driver_cuda")
    facts["gpu_memory"] = smi.get("memory.total")
    facts["power_limit"] = smi.get("power.limit")
    facts["torch"] = torch.__version__ if torch else None
    facts["torch_cuda"] = getattr(torch.version, "cuda", None) if torch else None
    facts["cudnn"] = torch.backends.cudnn.version() if torch and torch.cuda.is_available() else None
    try:
        import transformers

        facts["transformers"] = transformers.__version__
    except ImportError:
        facts["transformers"] = None
    if dry_run:
        facts["gpu"] = "none (dry run on the CPU provider)"
    facts["fp16_peak_tflops_table"] = table_peak(facts["gpu"] or "")
    facts["fp16_peak_tflops_measured"] = measured_peak() if not dry_run else None
    return facts


def peak(facts: dict[str, Any]) -> float | None:
    return facts.get("fp16_peak_tflops_table") or facts.get("fp16_peak_tflops_measured")


# ---------------------------------------------------------------- measurements


def best_throughput(
    answer_all: Any, pairs: list[tuple[str, str]], batch_sizes: list[int], warm: int | None = None
) -> dict[str, Any]:
    """questions/s at each batch size, after a warm-up pass over the first ``warm`` pairs (default:
    all of them, so that every shape's CUDA graph is captured before the timed pass)."""
    runs = {}
    for bs in batch_sizes:
        answer_all(pairs[:warm], bs)
        t0 = time.perf_counter()
        answer_all(pairs, bs)
        runs[bs] = len(pairs) / (time.perf_counter() - t0)
    best = max(runs, key=lambda b: runs[b])
    return {"questions_per_s": runs[best], "batch_size": best, "by_batch_size": runs}


def latency(answer_one: Any, pairs: list[tuple[str, str]]) -> dict[str, float]:
    from onnxqa.bench import latency_ms

    for q, c in pairs:  # every single-question shape seen (and captured) once before timing
        answer_one(q, c)
    return latency_ms(answer_one, pairs)


def stages(qa: Any, pairs: list[tuple[str, str]], batch_size: int) -> dict[str, float]:
    """Wall milliseconds per question of each stage of ``qa.batch`` (:data:`onnxqa.runtime.STAGES`),
    as the runtime's stage listener reports them."""
    with stage_seconds(qa) as spent:
        qa.batch(pairs, batch_size=batch_size)
    return {stage: 1000 * s / len(pairs) for stage, s in spent.items()}


def model_split(qa: Any, rows: int, width: int, runs: int = 50) -> dict[str, float] | None:
    """Milliseconds of one call of shape ``rows`` x ``width`` through the engine's own buffers:
    host-to-device copy of the inputs, the run (kernels, or a graph replay), device-to-host copy of
    the logits. None where the engine has no buffers of its own (no buckets)."""
    return qa.engine.time_call(rows, width, runs=runs)  # type: ignore[no-any-return]


def onnxqa_speed(
    model_dir: Path, name: str, pairs: list[tuple[str, str]], args: argparse.Namespace, device: str
) -> dict[str, Any]:
    import onnxqa

    config = {**ONNXQA, **DRY_RUN}[name]
    qa = onnxqa.load(model_dir, device=device, **config)
    m: dict[str, Any] = {"config": config}
    m |= best_throughput(lambda p, bs: qa.batch(p, batch_size=bs), pairs, args.batch_sizes)
    m["latency_ms"] = latency(lambda q, c: qa(q, c), pairs[: args.latency])
    m["stages_ms_per_question"] = stages(qa, pairs, m["batch_size"])
    m["model_split_ms"] = {"single": model_split(qa, 1, 128), "batch": model_split(qa, m["batch_size"], 384)}
    engine = qa.engine
    m["shapes"] = len(engine.shapes)
    m["shape_sessions"] = engine.shape_sessions
    return m


def pipeline_speed(checkpoint: Path, pairs: list[tuple[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """The transformers 4.x question-answering pipeline, PyTorch fp16 on GPU 0 (fp32 on the CPU in a dry run)."""
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

    if torch is None:
        raise ImportError("torch is not installed")
    if not transformers.__version__.startswith("4."):
        raise ImportError(
            f"transformers {transformers.__version__} has no question-answering pipeline: put a transformers "
            "4.57 install first on PYTHONPATH (see benchmarks/GPU.md)"
        )
    on_gpu = not args.dry_run
    dtype = torch.float16 if on_gpu else torch.float32
    model = AutoModelForQuestionAnswering.from_pretrained(checkpoint, dtype=dtype).eval()
    pipe = pipeline(
        "question-answering",
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(checkpoint),
        device=0 if on_gpu else -1,
    )

    def many(p: list[tuple[str, str]], bs: int) -> Any:
        return pipe(question=[q for q, _ in p], context=[c for _, c in p], batch_size=bs)

    m: dict[str, Any] = {"config": {"dtype": str(dtype), "device": "cuda:0" if on_gpu else "cpu"}}
    with torch.inference_mode():
        m |= best_throughput(many, pairs, args.peer_batch_sizes, warm=64)
        m["latency_ms"] = latency(lambda q, c: pipe(question=q, context=c), pairs[: args.latency])
    return m


def accuracy(model_dir: Path, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """fp16 (graphs) against fp32 on the held-out questions: equal answers and the official metric."""
    import onnxqa
    from onnxqa.squad import evaluate, restrict

    dataset, held = squad(HELDOUT, args.eval_questions)
    if args.eval_questions:
        dataset = restrict(dataset, {q.id for q in held})
    pairs = [(q.question, q.context) for q in held]
    configs = (
        {"fp32": {"precision": "fp32", "buckets": False}, "fp32-buckets": {"precision": "fp32", "buckets": True}}
        if args.dry_run
        else {"fp32": {"precision": "fp32"}, "fp16": {"precision": "fp16", "cuda_graph": True}}
    )
    out: dict[str, Any] = {"questions": len(held), "engines": {}}
    answers = {}
    for name, config in configs.items():
        qa = onnxqa.load(model_dir, device=device, **config)
        t0 = time.perf_counter()
        results = qa.batch_with_null(pairs, handle_impossible_answer=True, batch_size=64)
        seconds = time.perf_counter() - t0
        answers[name] = [(a[0].text, a[0].start, a[0].end) if a else ("", 0, 0) for a, _ in results]
        texts = {q.id: a[0] for q, a in zip(held, answers[name])}
        scores = evaluate(dataset, texts)
        out["engines"][name] = {
            "config": config,
            "exact": scores["exact"],
            "f1": scores["f1"],
            "HasAns_f1": scores.get("HasAns_f1"),
            "NoAns_exact": scores.get("NoAns_exact"),
            "seconds": seconds,
        }
        log(f"  reference {name}: EM {scores['exact']:.2f} F1 {scores['f1']:.2f}")
        del qa
        gc.collect()
    base, other = list(configs)
    same = sum(a == b for a, b in zip(answers[base], answers[other]))
    out["compared"] = [other, base]
    out["answers_equal_pct"] = 100 * same / len(held)
    out["f1_delta"] = out["engines"][other]["f1"] - out["engines"][base]["f1"]
    return out


# ---------------------------------------------------------------- the run


def export_dir(checkpoint: Path, out: Path, dry_run: bool) -> Path:
    from onnxqa.export import ExportConfig, export

    if not out.exists():
        precisions = ("fp32",) if dry_run else ("fp32", "fp16")
        export(str(checkpoint), out, ExportConfig(precisions=precisions, progress=False))
    return out


def results_path(args: argparse.Namespace, facts: dict[str, Any]) -> Path:
    if args.out:
        return Path(args.out)
    slug = re.sub(r"[^a-z0-9]+", "-", (facts["gpu"] or "unknown").lower()).strip("-")
    folder = Path(tempfile.gettempdir()) if args.dry_run else RESULTS
    return folder / f"gpu-{'dry-run' if args.dry_run else slug}.json"


def save(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))


def run(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    import onnxqa
    from onnxqa.export import random_checkpoint

    device = "cpu" if args.dry_run else "cuda"
    facts = gpu_facts(args.dry_run)
    log(
        f"GPU: {facts['gpu']}, driver {facts['driver']}, onnxruntime {facts['onnxruntime']} "
        f"(CUDA {facts['onnxruntime_cuda']})"
    )
    path = results_path(args, facts)
    result: dict[str, Any] = {"speed": {}, "accuracy": None, "skipped": []}
    if path.exists() and not args.fresh:  # add to an earlier run on this GPU
        result = json.loads(path.read_text())
    result |= {"machine": facts, "date": time.strftime("%Y-%m-%d"), "settings": vars(args).copy()}
    pairs = squad_pairs(args.questions)
    with tempfile.TemporaryDirectory(prefix="onnxqa-gpu-") as tmp:
        work = Path(tmp)
        for seed in args.models if args.speed else []:
            checkpoint = random_checkpoint(SHARED / "seeds" / seed, work / seed / "checkpoint")
            t0 = time.perf_counter()
            model_dir = export_dir(checkpoint, work / seed / "onnx", args.dry_run)
            manifest = json.loads((model_dir / "onnxqa.json").read_text())
            arch = architecture(checkpoint)
            with onnxqa.load(model_dir, device="cpu", precision="fp32") as qa:  # counts tokens only
                tokens = qa.window_lengths(pairs, max_seq_len=384, doc_stride=128, max_question_len=64)
            row: dict[str, Any] = {
                "architecture": arch,
                "windows": len(tokens),
                "tokens": sum(tokens),
                "gflop": sum(window_flops(arch, n) for n in tokens) / 1e9,
                "export_s": time.perf_counter() - t0,
                "fp16_validation": manifest["variants"].get("fp16", {}).get("validation"),
                "engines": {},
            }
            for name in args.engines:
                gc.collect()
                if torch is not None and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                log(f"{seed}: {name}")
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        m = (
                            pipeline_speed(checkpoint, pairs, args)
                            if name == PEER
                            else onnxqa_speed(model_dir, name, pairs, args, device)
                        )
                except Exception as exc:  # one engine failing must not lose the others' figures
                    result["skipped"].append(f"{name} on {seed}: {type(exc).__name__}: {exc}")
                    log(f"  failed: {type(exc).__name__}: {exc}")
                    continue
                seconds = len(pairs) / m["questions_per_s"]
                m["effective_tflops"] = row["gflop"] / 1000 / seconds
                row["engines"][name] = m
                log(
                    f"  {m['questions_per_s']:.0f} q/s (batch {m['batch_size']}), p50 {m['latency_ms']['p50']:.2f} ms, "
                    f"p99 {m['latency_ms']['p99']:.2f} ms, {m['effective_tflops']:.2f} TFLOP/s"
                )
            result["speed"][seed] = row
            save(result, path)
        if args.accuracy:
            name = "bert-tiny-finetuned-squadv2" if args.dry_run else REFERENCE.name
            source = random_checkpoint(SHARED / "seeds" / name, work / "ref-ckpt") if args.dry_run else REFERENCE
            log(f"reference model {name}: fp16 against fp32")
            result["accuracy"] = {"model": name} | accuracy(
                export_dir(source, work / "ref", args.dry_run), args, device
            )
            save(result, path)
    return result, path


# ---------------------------------------------------------------- the tables


def _f(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def report(result: dict[str, Any], json_path: Path) -> str:
    m = result["machine"]
    pk = peak(m)
    lines = [
        f"Measured by `python benchmarks/gpu.py` on {result['date']}: **{m['gpu']}** ({m.get('gpu_memory') or '?'}), "
        f"driver {m.get('driver') or '?'} (CUDA {m.get('driver_cuda') or '?'}), onnxruntime {m['onnxruntime']} "
        f"(built for CUDA {m.get('onnxruntime_cuda') or '?'}), torch {m.get('torch')} (CUDA {m.get('torch_cuda')}, "
        f"cuDNN {m.get('cudnn')}), transformers {m.get('transformers')}, Python {m['python']}, "
        f"{m['cpu']} ({m['cpu_cores']} cores). Raw numbers: `{_rel(json_path)}`.",
        "",
        f"fp16 dense peak: {_f(m.get('fp16_peak_tflops_table'), '.0f')} TFLOP/s (data sheet), "
        f"{_f(m.get('fp16_peak_tflops_measured'), '.0f')} TFLOP/s measured (one 8192³ torch matmul).",
        "",
        f"### Speed (first {result['settings']['questions']} SQuAD 2.0 dev questions, random weights, one process)",
        "",
        "questions/s: `qa.batch()` (pipeline: one call over all questions) at the best batch size tried; latency: "
        "one question per call, end to end (text in, answer out). Effective TFLOP/s = encoder FLOPs of the real "
        "(unpadded) tokens / wall time. Ratios are to the PyTorch fp16 pipeline in the same run.",
        "",
        "| model | engine | questions/s | batch | × pipeline | p50 ms | p99 ms | p50 ÷ pipeline's | eff. TFLOP/s "
        "| % of fp16 peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, row in result["speed"].items():
        engines = row["engines"]
        peer = engines.get(PEER)
        for name in ENGINES:
            if name not in engines:
                continue
            e = engines[name]
            ratio = e["questions_per_s"] / peer["questions_per_s"] if peer else None
            lat_ratio = e["latency_ms"]["p50"] / peer["latency_ms"]["p50"] if peer else None
            pct = 100 * e["effective_tflops"] / pk if pk else None
            lines.append(
                f"| {model} | {name} | {e['questions_per_s']:.0f} | {e['batch_size']} | {_f(ratio, '.1f')} | "
                f"{e['latency_ms']['p50']:.2f} | {e['latency_ms']['p99']:.2f} | {_f(lat_ratio, '.2f')} | "
                f"{e['effective_tflops']:.2f} | {_f(pct, '.1f')} |"
            )
    lines += _stage_table(result) + _target_table(result) + _accuracy_table(result)
    if result.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(result["skipped"])]
    return "\n".join(lines) + "\n"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _stages(e: dict[str, Any]) -> dict[str, float | None] | None:
    """A run's stage times, in today's stages; results files of earlier runs timed the decoding in
    two parts and the padding inside the model call."""
    s = e.get("stages_ms_per_question")
    if not s or "decode" in s:
        return s
    return {
        "tokenize": s["tokenize"],
        "pad": None,
        "model": s["model"],
        "decode": s["decode_spans"] + s["decode_chars"],
        "assemble": s["merge"],
    }


def _stage_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Where the time goes",
        "",
        "Wall ms per question of each stage of `qa.batch()` at the best batch size (the runtime's stage listener); "
        "then one call of batch × 384 through the engine's own buffers: host-to-device copy, run (kernels or graph "
        "replay), device-to-host copy (ms per call).",
        "",
        "| model | engine | tokenize | pad | model call | decode | assemble | H2D copy | run | D2H copy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, row in result["speed"].items():
        for name, e in row["engines"].items():
            s = _stages(e)
            if not s:
                continue
            split = (e.get("model_split_ms") or {}).get("batch") or {}
            times = " | ".join(_f(s[stage], ".3f") for stage in ("tokenize", "pad", "model", "decode", "assemble"))
            lines.append(
                f"| {model} | {name} | {times} | {_f(split.get('h2d'), '.3f')} | "
                f"{_f(split.get('run'), '.3f')} | {_f(split.get('d2h'), '.3f')} |"
            )
    return lines


def _target_table(result: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Targets (6-layer, hidden-768 models; best onnxqa fp16 configuration)",
        "",
        "| model | engine | p50 ≤ 1 ms | ≥ 10,000 q/s | ≥ 10× pipeline q/s | p50 ≤ ⅓ pipeline's |",
        "|---|---|---|---|---|---|",
    ]
    for model, row in result["speed"].items():
        arch = row["architecture"]
        if {k: arch[k] for k in SIX_BY_768} != SIX_BY_768:
            continue
        fp16 = {n: e for n, e in row["engines"].items() if n.startswith("onnxqa-fp16")}
        if not fp16:
            continue
        name = max(fp16, key=lambda n: fp16[n]["questions_per_s"])
        e, peer = fp16[name], row["engines"].get(PEER)

        def mark(ok: bool | None, value: str) -> str:
            return "–" if ok is None else f"{'yes' if ok else 'no'} ({value})"

        qps, p50 = e["questions_per_s"], e["latency_ms"]["p50"]
        x = qps / peer["questions_per_s"] if peer else None
        lat = p50 / peer["latency_ms"]["p50"] if peer else None
        lines.append(
            f"| {model} | {name} | {mark(p50 <= 1.0, f'{p50:.2f} ms')} | {mark(qps >= 10_000, f'{qps:.0f}')} | "
            f"{mark(None if x is None else x >= 10, _f(x, '.1f') + '×')} | "
            f"{mark(None if lat is None else lat <= 1 / 3, _f(lat, '.2f'))} |"
        )
    return lines


def _accuracy_table(result: dict[str, Any]) -> list[str]:
    acc = result.get("accuracy")
    if not acc:
        return []
    other, base = acc["compared"]
    lines = [
        "",
        f"### Accuracy: {acc['model']}, {acc['questions']} held-out questions (official SQuAD 2.0 metric, "
        "`handle_impossible_answer=True`)",
        "",
        "| engine | EM | F1 | HasAns F1 | NoAns EM | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in acc["engines"].items():
        lines.append(
            f"| {name} | {e['exact']:.2f} | {e['f1']:.2f} | {_f(e['HasAns_f1'], '.2f')} | "
            f"{_f(e['NoAns_exact'], '.2f')} | {e['seconds']:.1f} |"
        )
    ok = acc["answers_equal_pct"] >= 99.5 and abs(acc["f1_delta"]) <= 0.1
    lines += [
        "",
        f"{other} answers equal {base}'s on **{acc['answers_equal_pct']:.2f}%** of the questions; ΔF1 "
        f"**{acc['f1_delta']:+.3f}** (target: ≥ 99.5% and within 0.1: {'met' if ok else 'missed'}).",
    ]
    return lines


# ---------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SEEDS), choices=SEEDS)
    ap.add_argument("--engines", nargs="+", default=[*ONNXQA, PEER], choices=ENGINES)
    ap.add_argument("--questions", type=int, default=1000, help="throughput questions (default 1000)")
    ap.add_argument("--latency", type=int, default=300, help="questions timed one by one (default 300)")
    ap.add_argument("--batch-sizes", type=_ints, default=[32, 64, 128, 256], help="onnxqa batch sizes to try")
    ap.add_argument("--peer-batch-sizes", type=_ints, default=[16, 32, 64, 128], help="pipeline batch sizes to try")
    ap.add_argument("--eval-questions", type=int, default=None, help="reference-model questions (default: all)")
    ap.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    ap.add_argument("--no-speed", dest="speed", action="store_false")
    ap.add_argument("--fresh", action="store_true", help="start a new results file instead of adding to it")
    ap.add_argument("--out", help="results JSON (default: benchmarks/results/gpu-<gpu>.json)")
    ap.add_argument("--markdown", help="write the tables into this file's gpu.py section (default: BENCHMARKS.md)")
    ap.add_argument("--report-only", metavar="RESULTS.json", help="only render the tables of a results file")
    ap.add_argument("--dry-run", action="store_true", help="CPU provider, bert-tiny, 20 questions: checks the script")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.models = ["bert-tiny-finetuned-squadv2"]
        args.engines = [*DRY_RUN, PEER]
        args.questions, args.latency, args.eval_questions = min(args.questions, 20), min(args.latency, 10), 20
        args.batch_sizes, args.peer_batch_sizes = [4, 16], [1, 4]
    return args


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        json_path = Path(args.report_only)
        print(report(json.loads(json_path.read_text()), json_path))
        return
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs the seed configs and SQuAD data in ../shared")
    if not args.dry_run:
        if not cuda_available():
            import onnxruntime as ort

            sys.exit(
                f"benchmarks/gpu.py needs onnxruntime's CUDAExecutionProvider; this onnxruntime {ort.__version__} "
                f"offers {ort.get_available_providers()}. Install onnxruntime-gpu in place of onnxruntime (see "
                "benchmarks/GPU.md), or check the script on the CPU with --dry-run."
            )
    import_torch()
    result, json_path = run(args)
    section = report(result, json_path)
    print(section)
    markdown = args.markdown or (None if args.dry_run else str(ROOT / "BENCHMARKS.md"))
    if markdown:
        write_section(Path(markdown), section, START, END)
    log(f"wrote {json_path}" + (f" and {markdown}" if markdown else ""))


if __name__ == "__main__":
    main()
