"""One run, one machine, the same questions: onnxqa next to what users would run instead.

    python benchmarks/compare.py                    # everything (about an hour on 2 cores)
    python benchmarks/compare.py --models bert-tiny-finetuned-squadv2 --questions 200 --no-accuracy
    python benchmarks/compare.py --report-only      # re-render BENCHMARKS.md and the chart from JSON
    python benchmarks/compare.py --models xlm-roberta-base deberta-v3-base electra-base mobilebert-uncased \
        --engines pipeline-fp32 optimum-int8 onnxqa-fp32 onnxqa-int8 --questions 200 --no-accuracy \
        --name families-amd-epyc-2c --section families   # the families beyond the seeds

Models: the five seeds, and the published architectures of the other families (built by
``tests/families.py``: full depth and vocabulary size, a SentencePiece tokenizer trained here for
XLM-R and DeBERTa-v3). Engines, each on every model (random weights: speed does not depend on their
values):
  pipeline-fp32   transformers question-answering pipeline, PyTorch fp32 (batch of one, its default)
  optimum-O2      optimum ORTModelForQuestionAnswering, optimized O2, in that pipeline
  optimum-int8    the same, dynamically quantized with optimum's avx512_vnni / avx2 preset
  optimum-intel   optimum-intel's OVModelForQuestionAnswering (exported, OpenVINO's default precision)
                  in that pipeline (`pip install optimum-intel` with transformers 4.57: 1.27)
  optimum-intel-int8w  the same with int8 weights (load_in_8bit)
  openvino-*-alone     OpenVINO's compiled model alone on onnxqa's windows, batch of one, warmed over
                  every window first (it compiles kernels per shape): f32 and bf16 precision hints on
                  the plain ONNX export, and onnxqa's NNCF int8 (the openvino-int8 variant)
  onnxqa-fp32     onnxqa, fp32 variant
  onnxqa-int8     onnxqa, int8 variant (onnxruntime)
  onnxqa-int8-ffn-fp32  onnxqa, int8 exported with --int8 static-ffn-fp32 (feed-forward outputs in fp32)
  onnxqa-openvino-int8  onnxqa, openvino-int8 variant (OpenVINO, the openvino extra)
  onnxqa-tuned    onnxqa after `onnxqa tune` (30 s) on a copy of the model directory
  onnxqa-fp16     onnxqa on CUDA (only where a GPU is present)
On a shared host the speed of every engine drifts by tens of percent for minutes at a time: with
``--rounds R`` every engine runs once per round, in turn, built anew, and the best pass of all
rounds counts, so that a slow stretch falls on all engines rather than on whichever ran in it.
Measured: throughput (questions/s) on the first N questions of SQuAD 2.0 dev, single-question
latency p50/p90/p99, effective GFLOP/s against the machine's measured fp32 / int8 matmul peak, and
on the trained reference model EM/F1 of every engine on the held-out SQuAD 2.0 articles.
Writes benchmarks/results/<machine>.json, benchmarks/results/<machine>.png and BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

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
    machine_name,
    markers,
    matmul_peak,
    squad,
    squad_pairs,
    window_flops,
    write_section,
)

ENGINES = (
    "pipeline-fp32",
    "optimum-O2",
    "optimum-int8",
    "optimum-intel",
    "optimum-intel-int8w",
    "openvino-f32-alone",
    "openvino-bf16-alone",
    "openvino-int8-alone",
    "onnxqa-fp32",
    "onnxqa-int8",
    "onnxqa-int8-ffn-fp32",
    "onnxqa-openvino-int8",
    "onnxqa-tuned",
    "onnxqa-fp16",
)
# OpenVINO's compiled models alone on onnxqa's windows (no tokenization or decoding): no answers,
# no accuracy; their questions/s is the questions over the time to run all their windows
MODEL_ALONE = ("openvino-f32-alone", "openvino-bf16-alone", "openvino-int8-alone")
START, END = markers("compare.py")
# the families beyond the seeds: model name -> tests/families.py family
FAMILY_MODELS = {
    "xlm-roberta-base": "xlm-roberta",
    "deberta-v3-base": "deberta-v3",
    "mdeberta-v3-base": "mdeberta-v3",
    "electra-base": "electra",
    "mobilebert-uncased": "mobilebert",
}


def model_checkpoint(name: str, out: Path) -> Path:
    """A seed's or a family's checkpoint with random weights (see the module doc)."""
    from onnxqa.export import random_checkpoint

    if name in SEEDS:
        return random_checkpoint(SHARED / "seeds" / name, out)
    sys.path.insert(0, str(ROOT / "tests"))
    from families import build_checkpoint

    return build_checkpoint(FAMILY_MODELS[name], SHARED, out, layers=None, full_vocab=True)


# ---------------------------------------------------------------- engines


class Engine:
    """``one(q, c)`` answers one question; ``many(pairs)`` answers many; both return texts.
    ``prepare(pairs)``, where given, runs before the clock starts."""

    def __init__(self, name: str, one: Any, many: Any, prepare: Any = None) -> None:
        self.name, self.one, self.many, self.prepare = name, one, many, prepare


def pipeline_engine(name: str, pipe: Any) -> Engine:
    def one(q: str, c: str, **kw: Any) -> str:
        out = pipe(question=q, context=c, **kw)
        return (out[0] if isinstance(out, list) else out)["answer"]

    return Engine(name, one, lambda pairs, **kw: [one(q, c, **kw) for q, c in pairs])


def onnxqa_engine(name: str, qa: Any) -> Engine:
    def many(pairs: list[tuple[str, str]], **kw: Any) -> list[str]:
        return [a[0].text if a else "" for a in qa.batch(pairs, **kw)]

    # prepared like the OpenVINO peers: every window shape run once before the clock (OpenVINO
    # compiles kernels per new shape; onnxruntime does not need it)
    return Engine(name, lambda q, c, **kw: qa(q, c, **kw)[0].text, many, prepare=many)


@contextlib.contextmanager
def default_tensor_type_shim() -> Any:
    """optimum's quantizer fails on its own O2 graph with onnxruntime >= 1.2x (shape inference
    cannot type the fused operators' outputs; onnxruntime asks for ``DefaultTensorType``, which
    optimum does not pass). Inject that one option so optimum's int8 preset runs unchanged."""
    from onnx import TensorProto
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer

    original = ONNXQuantizer.__init__

    signature = inspect.signature(original)

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        # by keyword from optimum, by position from onnxruntime's own sub-graph quantizer (DeBERTa's If)
        bound = signature.bind(self, *args, **kwargs)
        extra = bound.arguments.get("extra_options") or {}
        bound.arguments["extra_options"] = {**extra, "DefaultTensorType": TensorProto.FLOAT}
        original(*bound.args, **bound.kwargs)

    ONNXQuantizer.__init__ = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        ONNXQuantizer.__init__ = original  # type: ignore[method-assign]


def build_engines(checkpoint: Path, work: Path, wanted: tuple[str, ...]) -> dict[str, Any]:
    """Factories (built lazily, one at a time, to keep memory and caches fair)."""
    import onnxqa
    from onnxqa.export import ExportConfig, export

    factories: dict[str, Any] = {}
    out = work / "onnxqa"

    def onnxqa_dir() -> Path:
        if not out.exists():
            precisions = ("fp32", "int8", "fp16") if cuda_available() else ("fp32", "int8")
            if any(
                e.startswith("onnxqa-openvino") or e == "openvino-int8-alone" or e == "onnxqa-tuned" for e in wanted
            ):
                precisions += ("openvino-int8",) if onnxqa.runtime.openvino_available() else ()
            # static int8 is calibrated on the bundled generated pairs, except the trained reference
            # model's: on SQuAD training questions (never the held-out ones), as a user would pass
            # --calibration with data of their domain
            calibration = str(SHARED / "data" / "squad" / "reference-train.json") if checkpoint == REFERENCE else None
            config = ExportConfig(precisions=precisions, calibration=calibration, progress=False)
            export(str(checkpoint), out, config)
        return out

    def transformers_pipe() -> Engine:
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer, pipeline

        model = AutoModelForQuestionAnswering.from_pretrained(checkpoint).eval()
        return pipeline_engine(
            "pipeline-fp32",
            pipeline(
                "question-answering", model=model, tokenizer=AutoTokenizer.from_pretrained(checkpoint), device="cpu"
            ),
        )

    def optimum_pipe(int8: bool) -> Engine:
        from optimum.onnxruntime import ORTModelForQuestionAnswering, ORTOptimizer, ORTQuantizer
        from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig
        from optimum.onnxruntime.pipelines import pipeline
        from transformers import AutoTokenizer

        o2 = work / "optimum-o2"
        if not o2.exists():
            model = ORTModelForQuestionAnswering.from_pretrained(checkpoint, export=True)
            # DeBERTa: the optimizer's symbolic shape inference ran over 9 minutes here without finishing
            # (onnxqa's registry turns it off for the same reason); optimum has the same switch
            model_type = json.loads((checkpoint / "config.json").read_text())["model_type"]
            o2_config = AutoOptimizationConfig.O2(disable_shape_inference=model_type == "deberta-v2")
            try:
                ORTOptimizer.from_pretrained(model).optimize(o2_config, save_dir=o2)
            except (NotImplementedError, KeyError, ValueError) as exc:  # a model type optimum cannot optimize
                log(
                    f"  optimum's O2 refused this model ({type(exc).__name__}: {str(exc)[:120]}); its int8 quantizes "
                    "the plain export"
                )
                model.save_pretrained(o2)
        path = o2
        if int8:
            path = work / "optimum-int8"
            if not path.exists():
                from onnxqa.bench import machine_facts

                preset = (
                    AutoQuantizationConfig.avx512_vnni
                    if machine_facts()["avx512_vnni"]
                    else AutoQuantizationConfig.avx2
                )
                name = "model_optimized.onnx" if (o2 / "model_optimized.onnx").exists() else "model.onnx"
                quantizer = ORTQuantizer.from_pretrained(o2, file_name=name)
                with default_tensor_type_shim():
                    quantizer.quantize(save_dir=path, quantization_config=preset(is_static=False, per_channel=False))
        files = sorted(p.name for p in path.glob("*.onnx"))
        model = ORTModelForQuestionAnswering.from_pretrained(path, file_name=files[0])
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        return pipeline_engine(
            "optimum-int8" if int8 else "optimum-O2", pipeline("question-answering", model=model, tokenizer=tokenizer)
        )

    def optimum_intel(int8: bool) -> Engine:
        from optimum.intel import OVModelForQuestionAnswering
        from transformers import AutoTokenizer, pipeline

        saved = work / ("optimum-intel-int8w" if int8 else "optimum-intel")
        if not saved.exists():  # exported once, reloaded in later rounds
            OVModelForQuestionAnswering.from_pretrained(checkpoint, export=True, load_in_8bit=int8).save_pretrained(
                saved
            )
        model = OVModelForQuestionAnswering.from_pretrained(saved)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        return pipeline_engine(
            "optimum-intel-int8w" if int8 else "optimum-intel",
            pipeline("question-answering", model=model, tokenizer=tokenizer),
        )

    def alone(name: str) -> Engine:
        precision = {"openvino-int8-alone": "f32", "openvino-f32-alone": "f32", "openvino-bf16-alone": "bf16"}[name]
        if name == "openvino-int8-alone":
            model_dir = onnxqa_dir()
            variant = json.loads((model_dir / "onnxqa.json").read_text())["variants"].get("openvino-int8")
            if variant is None:
                raise ImportError("no openvino-int8 variant (the openvino extra is not installed)")
            graph = model_dir / variant["file"]
        else:
            graph = plain_onnx()
        return model_alone(name, graph, precision, onnxqa_dir())

    def plain_onnx() -> Path:
        raw = work / "plain-onnx"
        if not raw.exists():
            from optimum.exporters.onnx import main_export

            main_export(str(checkpoint), raw, task="question-answering", do_validation=False)
        return raw / "model.onnx"

    def tuned() -> Engine:
        import shutil

        from onnxqa.tune import tune

        copy = work / "onnxqa-tuned"
        if not (copy / "onnxqa.tuning.json").exists():  # not tuned yet, or a tune that did not finish
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(onnxqa_dir(), copy)
            log(f"  tune chose {tune(copy, seconds=30)['chosen']}")
        chosen = json.loads((copy / "onnxqa.tuning.json").read_text())["chosen"]  # tuned now or by an earlier run
        factories["_tuned"] = ", ".join(f"{k} {v}" for k, v in chosen.items())
        return onnxqa_engine("onnxqa-tuned", onnxqa.load(copy, device="cpu"))

    if "optimum-intel" in wanted:
        factories["optimum-intel"] = lambda: optimum_intel(False)
    if "optimum-intel-int8w" in wanted:
        factories["optimum-intel-int8w"] = lambda: optimum_intel(True)
    for name in MODEL_ALONE:
        if name in wanted:
            factories[name] = lambda n=name: alone(n)
    if "onnxqa-openvino-int8" in wanted:
        factories["onnxqa-openvino-int8"] = lambda: onnxqa_engine(
            "onnxqa-openvino-int8", onnxqa.load(onnxqa_dir(), device="cpu", precision="openvino-int8")
        )
    if "onnxqa-tuned" in wanted:
        factories["onnxqa-tuned"] = tuned
    if "pipeline-fp32" in wanted:
        factories["pipeline-fp32"] = transformers_pipe
    if "optimum-O2" in wanted:
        factories["optimum-O2"] = lambda: optimum_pipe(False)
    if "optimum-int8" in wanted:
        factories["optimum-int8"] = lambda: optimum_pipe(True)
    for precision in ("fp32", "int8"):
        if f"onnxqa-{precision}" in wanted:
            factories[f"onnxqa-{precision}"] = lambda p=precision: onnxqa_engine(
                f"onnxqa-{p}", onnxqa.load(onnxqa_dir(), device="cpu", precision=p)
            )
    if "onnxqa-int8-ffn-fp32" in wanted:

        def ffn_fp32() -> Engine:
            ffn = work / "onnxqa-int8-ffn-fp32"
            if not ffn.exists():
                train = SHARED / "data" / "squad" / "reference-train.json"
                calibration = str(train) if checkpoint == REFERENCE else None
                config = ExportConfig(
                    precisions=("fp32", "int8"), int8="static-ffn-fp32", calibration=calibration, progress=False
                )
                export(str(checkpoint), ffn, config)
            return onnxqa_engine("onnxqa-int8-ffn-fp32", onnxqa.load(ffn, device="cpu", precision="int8"))

        factories["onnxqa-int8-ffn-fp32"] = ffn_fp32
    if "onnxqa-fp16" in wanted and cuda_available():
        factories["onnxqa-fp16"] = lambda: onnxqa_engine(
            "onnxqa-fp16", onnxqa.load(onnxqa_dir(), device="cuda", precision="fp16")
        )
    factories["_onnxqa_dir"] = onnxqa_dir
    return factories


def model_alone(name: str, graph: Path, precision: str, model_dir: Path) -> Engine:
    """OpenVINO's compiled ``graph`` alone on onnxqa's windows of each pair (tokenized before the
    clock starts), one window per call, at ``precision`` ("f32" or "bf16"); warmed over every
    window of the first pairs it is given. Answers are not decoded: its texts are empty."""
    import openvino as ov

    import onnxqa

    compiled = ov.Core().compile_model(
        str(graph), "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    )
    request = compiled.create_infer_request()
    names = {n for port in compiled.inputs for n in port.get_names()}
    windower = onnxqa.load(model_dir, device="cpu", precision="fp32")._windower
    feeds: dict[tuple[str, str], list[dict[str, np.ndarray]]] = {}
    warmed: set[tuple[int, ...]] = set()

    def windows(pair: tuple[str, str]) -> list[dict[str, np.ndarray]]:
        if pair not in feeds:
            out = []
            for w in windower.windows([pair], max_seq_len=384, doc_stride=128, max_question_len=64):
                feed = {"input_ids": w.input_ids[None], "attention_mask": np.ones_like(w.input_ids)[None]}
                if "token_type_ids" in names:
                    feed["token_type_ids"] = w.type_ids[None]
                out.append(feed)
            feeds[pair] = out
        return feeds[pair]

    def run(pairs: list[tuple[str, str]]) -> list[str]:
        todo = [f for pair in pairs for f in windows(pair)]
        for f in todo:  # warm-up: every new shape compiled before the clock (as a fair peer is run)
            if f["input_ids"].shape not in warmed:
                request.infer(f)
                warmed.add(f["input_ids"].shape)
        return todo

    def many(pairs: list[tuple[str, str]], **_: Any) -> list[str]:
        for f in run(pairs):
            request.infer(f)
        return [""] * len(pairs)

    return Engine(name, lambda q, c, **kw: many([(q, c)])[0], many, prepare=run)


# ---------------------------------------------------------------- measurements


def export_checks(model_dir: Path) -> dict[str, Any]:
    """Each variant's check at export (status, agreement, relative logit difference), the rejected too."""
    manifest = json.loads((model_dir / "onnxqa.json").read_text())
    entries = {**manifest.get("rejected", {}), **manifest["variants"]}
    keys = ("status", "agreement", "mean_rel_diff", "max_abs_diff")
    return {p: {k: v["validation"].get(k) for k in keys} for p, v in entries.items()}


def speed(engine: Engine, pairs: list[tuple[str, str]], n_latency: int, passes: int = 1) -> dict[str, Any]:
    """Throughput: the best of ``passes`` timed passes over ``pairs`` (the machine's noise, other
    tenants of a shared host, only ever slows a pass down); latency: one question per call."""
    from onnxqa.bench import latency_ms

    if engine.prepare is not None:
        engine.prepare(pairs)  # model-alone peers: windows tokenized, every shape compiled
    engine.many(pairs[:8])  # warm-up
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        engine.many(pairs)
        times.append(time.perf_counter() - t0)
    seconds = min(times)
    return {
        "questions": len(pairs),
        "seconds": seconds,
        "pass_seconds": times,
        "questions_per_s": len(pairs) / seconds,
        "latency_ms": latency_ms(engine.one, pairs[:n_latency]) if n_latency else None,
    }


def accuracy(engine: Engine, dataset: dict[str, Any], questions: list[Any]) -> dict[str, Any]:
    from onnxqa.squad import evaluate

    t0 = time.perf_counter()
    texts = engine.many([(q.question, q.context) for q in questions], handle_impossible_answer=True)
    seconds = time.perf_counter() - t0
    scores = evaluate(dataset, {q.id: t for q, t in zip(questions, texts)})
    return {
        "exact": scores["exact"],
        "f1": scores["f1"],
        "HasAns_f1": scores.get("HasAns_f1"),
        "NoAns_exact": scores.get("NoAns_exact"),
        "questions": len(questions),
        "seconds": seconds,
    }


def _timed(
    factories: dict[str, Any], name: str, seed: str, pairs: list, args: argparse.Namespace, first: bool, skipped: list
) -> dict[str, Any] | None:
    """One round of engine ``name``: built anew, ``args.passes`` timed passes (latency in the first
    round only); None where it cannot run here (recorded in ``skipped``)."""
    import onnxqa

    log(f"{seed}: {name}")
    why = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            engine = factories[name]()
            return speed(engine, pairs, args.latency if first else 0, args.passes)
    except ImportError as exc:
        why = f"{name}: {exc}"
    except onnxqa.ModelLoadError as exc:  # a variant that failed its check was not written
        why = f"{name} on {seed}: {exc}"
    finally:
        engine = None  # one engine alive at a time: memory and caches stay fair
        gc.collect()
    skipped.append(why if first else f"{why} (in a later round; its earlier rounds are kept)")
    return None


def _best(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Throughput over the rounds so far: every pass kept, the fastest one counted."""
    times = earlier["pass_seconds"] + later["pass_seconds"]
    return {"pass_seconds": times, "seconds": min(times), "questions_per_s": earlier["questions"] / min(times)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import onnxqa
    from onnxqa.bench import machine_facts

    facts = machine_facts()
    log(f"machine: {facts['cpu']}, {facts['logical_cores']} cores")
    result: dict[str, Any] = {
        "machine": facts,
        "date": time.strftime("%Y-%m-%d"),
        "settings": vars(args).copy(),
        "peak_gflops": {},
        "speed": {},
        "accuracy": {},
        "skipped": [],
    }
    result["peak_gflops"] = {"fp32": matmul_peak("fp32"), "int8": matmul_peak("int8")}
    log(f"matmul peak: {result['peak_gflops']}")
    wanted = tuple(args.engines)
    pairs = squad_pairs(args.questions)
    keep = contextlib.nullcontext(args.work) if args.work else tempfile.TemporaryDirectory(prefix="onnxqa-bench-")
    with keep as tmp:
        work = Path(tmp)
        for seed in args.models:
            checkpoint = work / seed / "checkpoint"
            if not (checkpoint / "config.json").is_file():
                checkpoint = model_checkpoint(seed, checkpoint)
            arch = architecture(checkpoint)
            factories = build_engines(checkpoint, work / seed, wanted)
            with onnxqa.load(factories["_onnxqa_dir"](), device="cpu", precision="fp32") as qa:
                tokens = qa.window_lengths(pairs, max_seq_len=384, doc_stride=128, max_question_len=64)
            flops = sum(window_flops(arch, n) for n in tokens)
            row: dict[str, Any] = {
                "architecture": arch,
                "windows": len(tokens),
                "tokens": sum(tokens),
                "gflop": flops / 1e9,
                "engines": {},
                "checks": export_checks(factories["_onnxqa_dir"]()),
            }
            failed = {name for name in wanted if name not in factories}
            result["skipped"] += [f"{name} on {seed}: not available here" for name in wanted if name in failed]
            for round_ in range(args.rounds):
                for name in wanted:
                    if name in failed:  # not here, or it could not run in the first round: not retried
                        continue
                    m = _timed(factories, name, seed, pairs, args, first=round_ == 0, skipped=result["skipped"])
                    if m is None:
                        failed.add(name)
                        continue
                    earlier = row["engines"].get(name)
                    if earlier is not None:  # a later round: the best pass of all rounds, the first round's latency
                        m = {**earlier, **_best(earlier, m)}
                    m["effective_gflops"] = flops / 1e9 / m["seconds"]
                    row["engines"][name] = m
                    if name == "onnxqa-tuned":
                        row["tuned"] = factories.get("_tuned")
                    log(f"  {m['questions_per_s']:.1f} q/s (best so far), {m['effective_gflops']:.1f} GFLOP/s")
            result["speed"][seed] = row
            save(result, args)
        if args.accuracy:
            dataset, held = squad(HELDOUT, args.eval_questions)
            if args.eval_questions:
                from onnxqa.squad import restrict

                dataset = restrict(dataset, {q.id for q in held})
            factories = build_engines(REFERENCE, work / "reference", wanted)
            for name in wanted:
                if name not in factories or name in MODEL_ALONE:
                    continue
                log(f"reference model: {name} on {len(held)} questions")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    engine = factories[name]()
                    result["accuracy"][name] = accuracy(engine, dataset, held)
                log(f"  EM {result['accuracy'][name]['exact']:.2f} F1 {result['accuracy'][name]['f1']:.2f}")
                del engine
                gc.collect()
                save(result, args)
    return result


# ---------------------------------------------------------------- reporting


def save(result: dict[str, Any], args: argparse.Namespace) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name or machine_name(result['machine'])}.json"
    path.write_text(json.dumps(result, indent=2))
    return path


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(result["speed"])
    engines = [e for e in ENGINES if any(e in result["speed"][m]["engines"] for m in models)]
    fig, ax = plt.subplots(figsize=(11, 4.8 + 0.25 * ((len(engines) + 4) // 5)))
    width = 0.8 / max(len(engines), 1)
    for j, engine in enumerate(engines):
        values = [result["speed"][m]["engines"].get(engine, {}).get("questions_per_s", 0) for m in models]
        bars = ax.bar(np.arange(len(models)) + j * width, values, width, label=engine)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_yscale("log")
    ax.set_ylabel("questions / s (log scale)")
    ax.set_xticks(np.arange(len(models)) + width * (len(engines) - 1) / 2)
    ax.set_xticklabels(
        [m.replace("-finetuned-squadv2", "").replace("-distilled-squad", "") for m in models], fontsize=8
    )
    ax.set_title(
        f"Throughput, first {result['settings']['questions']} SQuAD 2.0 dev questions — "
        f"{result['machine']['cpu']}, {result['machine']['logical_cores']} cores"
    )
    # below the axes: with many engines a legend inside would cover the bars
    ax.legend(fontsize=8, ncol=min(len(engines), 5), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(result: dict[str, Any], json_path: Path, image: str | None = None, heading: str = "##") -> str:
    m = result["machine"]
    peak = result["peak_gflops"]
    lines = [
        f"Measured by `python benchmarks/compare.py` on {result['date']}: {m['cpu']}, {m['logical_cores']} cores "
        f"(AVX2 {'yes' if m['avx2'] else 'no'}, AVX-512 VNNI {'yes' if m['avx512_vnni'] else 'no'}"
        + (f", AMX {'yes' if m['amx_int8'] else 'no'}, bf16 {'yes' if m['bf16'] else 'no'}" if "bf16" in m else "")
        + f"), Python {m['python']}, onnxruntime {m['onnxruntime']}"
        + (f", OpenVINO {m['openvino']}" if m.get("openvino") else "")
        + f". Raw numbers: `{json_path.relative_to(ROOT)}`.",
        "All engines ran in the same process, one after the other, on the same questions"
        + (
            f", in {result['settings']['rounds']} rounds (every engine in turn, built anew each round)."
            if result["settings"].get("rounds", 1) > 1
            else "."
        ),
        "",
        f"Machine limit, measured by the script (one large onnxruntime MatMul, all threads): "
        f"fp32 **{peak['fp32']:.1f} GFLOP/s**, int8 **{peak['int8']:.1f} GOP/s**.",
        "",
        f"![throughput]({image or f'benchmarks/results/{json_path.stem}.png'})",
        "",
        f"{heading} Throughput and latency (first {result['settings']['questions']} questions of SQuAD 2.0 dev, "
        "random weights)",
        "",
        f"questions/s over the whole set, best of "
        f"{result['settings'].get('passes', 1) * result['settings'].get('rounds', 1)} pass(es) "
        "(onnxqa: `batch()`; pipelines: one call per question, their default); latency: one question "
        "per call, end to end. Ratios are to the transformers "
        "pipeline, to optimum's int8 and to the fastest OpenVINO model alone (`openvino-*-alone`: the "
        "compiled model on the same windows, one per call, warmed over every shape, no tokenization or "
        "decoding) in the same run. Effective GFLOP/s = encoder FLOPs of the real (unpadded) tokens / wall time.",
        "",
        "| model | engine | questions/s | × pipeline | × optimum int8 | × best OpenVINO alone | p50 ms | p90 ms "
        "| p99 ms | eff. GFLOP/s | % of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(qps: float, to: float | None) -> str:
        return f"{qps / to:.2f}" if to else "–"

    for model, row in result["speed"].items():
        engines = row["engines"]
        base = engines.get("pipeline-fp32", {}).get("questions_per_s")
        opt8 = engines.get("optimum-int8", {}).get("questions_per_s")
        alone = [engines[e]["questions_per_s"] for e in MODEL_ALONE if e in engines]
        best_alone = max(alone) if alone else None
        for name in ENGINES:
            if name not in engines:
                continue
            e = engines[name]
            qps = e["questions_per_s"]
            lat = e["latency_ms"] or {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
            # the limit of the arithmetic the engine runs: no bf16 limit is measured (OpenVINO's
            # default precision on a CPU with bf16, so optimum-intel's too)
            tuned_int8 = name == "onnxqa-tuned" and "int8" in str(row.get("tuned"))
            bf16 = name == "openvino-bf16-alone" or (name == "optimum-intel" and result["machine"].get("bf16", True))
            pk = None if bf16 else peak["int8"] if "int8" in name or tuned_int8 else peak["fp32"]
            lines.append(
                f"| {model} | {name} | {qps:.1f} | {ratio(qps, base)} | {ratio(qps, opt8)} | "
                f"{ratio(qps, best_alone)} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} | "
                f"{e['effective_gflops']:.1f} | " + (f"{100 * e['effective_gflops'] / pk:.0f}% |" if pk else "– |")
            )
        if "onnxqa-tuned" in engines and row.get("tuned"):
            lines.append(f"| {model} | (tune chose) | {row['tuned']} | | | | | | | | |")
    if result["accuracy"]:
        acc = result["accuracy"]
        n = next(iter(acc.values()))["questions"]
        lines += [
            "",
            f"{heading} Accuracy on the trained reference model ({n} questions of "
            "`dev-v2.0.reference-heldout.json`, official SQuAD 2.0 metric, `handle_impossible_answer=True`)",
            "",
            "| engine | EM | F1 | HasAns F1 | NoAns EM | ΔF1 vs pipeline |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        ref_f1 = acc.get("pipeline-fp32", {}).get("f1")
        for name in ENGINES:
            if name in acc:
                a = acc[name]
                delta = f"{a['f1'] - ref_f1:+.2f}" if ref_f1 is not None else "–"
                lines.append(
                    f"| {name} | {a['exact']:.2f} | {a['f1']:.2f} | {a['HasAns_f1']:.2f} | "
                    f"{a['NoAns_exact']:.2f} | {delta} |"
                )
    if result["skipped"]:
        engines = sorted({s.split(" on ")[0].split(":")[0] for s in result["skipped"]})
        lines += ["", f"Not measured here: {', '.join(engines)} (needs a CUDA execution provider or a missing peer)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SEEDS), choices=[*SEEDS, *FAMILY_MODELS])
    ap.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    ap.add_argument("--questions", type=int, default=1000, help="throughput questions (default 1000)")
    ap.add_argument("--latency", type=int, default=100, help="questions timed one by one (default 100)")
    ap.add_argument("--passes", type=int, default=1, help="timed throughput passes, the best kept (default 1)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every engine this many times in turn, each built anew, the best pass of all kept: a slow "
        "stretch of a shared host then falls on every engine, not on one (default 1)",
    )
    ap.add_argument("--eval-questions", type=int, default=None, help="reference-model questions (default: all)")
    ap.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    ap.add_argument("--name", help="results file name (default: derived from the CPU)")
    ap.add_argument("--report-only", metavar="RESULTS.json", help="only re-render the report from a results file")
    ap.add_argument(
        "--work",
        metavar="DIR",
        help="keep checkpoints and exports in DIR (default: a temporary directory) and reuse those already there",
    )
    ap.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"), help="where to write the table")
    ap.add_argument(
        "--section", default="", help="write between the markers 'compare.py SECTION' (default: 'compare.py')"
    )
    args = ap.parse_args()
    if args.rounds < 1 or args.passes < 1:
        ap.error("--rounds and --passes must be at least 1")
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} not found: the benchmark needs the seed configs and SQuAD data in ../shared")
    if args.report_only:
        json_path = Path(args.report_only).resolve()
        result = json.loads(json_path.read_text())
    else:
        result = run(args)
        json_path = save(result, args)
    chart(result, json_path.with_suffix(".png"))
    start, end = markers(f"compare.py {args.section}".strip()) if args.section else (START, END)
    markdown, image = Path(args.markdown).resolve(), None
    if markdown.parent == ROOT / "docs":  # the docs site serves only what is inside docs/
        import shutil

        (ROOT / "docs" / "assets").mkdir(exist_ok=True)
        shutil.copyfile(json_path.with_suffix(".png"), ROOT / "docs" / "assets" / f"{json_path.stem}.png")
        image = f"assets/{json_path.stem}.png"
    # a named section sits under a heading of its page: its own headings one level deeper
    write_section(markdown, report(result, json_path, image, "###" if args.section else "##"), start, end)
    log(f"wrote {json_path}, {json_path.with_suffix('.png')}, {args.markdown}")


if __name__ == "__main__":
    main()
