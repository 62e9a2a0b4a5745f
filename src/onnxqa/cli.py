"""The ``onnxqa`` command: export, ask, eval, bench, batch, serve. Each command adapts its arguments to one
typed function; the defaults shown and used are those of the options' own definitions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import InputError, OnnxQAError

if TYPE_CHECKING:
    from .runtime import BatchSettings, QuestionAnswerer

__all__ = ["main"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
DEFAULT_LOG_LEVEL = "warning"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


# ---------------------------------------------------------------------- the commands


def _precisions(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportConfig, export

    config = ExportConfig(
        precisions=_precisions(args.precision),
        force=args.force,
        atol=args.atol,
        tokenizer=args.tokenizer,
        opset=args.opset,
        int8=args.int8,
        calibration=args.calibration,
        calibration_pairs=args.calibration_pairs,
        progress=not args.quiet,
    )
    manifest = export(args.source, args.output_dir, config)
    variants = ", ".join(f"{k} ({v['file']})" for k, v in manifest["variants"].items())
    print(f"exported {args.source} to {args.output_dir}: {variants}")
    return 0


def _load(args: argparse.Namespace) -> QuestionAnswerer:
    from .runtime import load

    return load(args.model_dir, device=args.device, precision=args.precision, threads=args.threads)


def _cmd_ask(args: argparse.Namespace) -> int:
    if args.context_file is not None:
        try:
            context = Path(args.context_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read context file {args.context_file}: {exc}") from exc
    else:
        context = args.context
    qa = _load(args)
    answers = qa(args.question, context, top_k=args.top_k, handle_impossible_answer=args.handle_impossible_answer)
    if args.json:
        print(json.dumps([a.to_dict() for a in answers], ensure_ascii=False, indent=2))
    else:
        for a in answers:
            shown = a.text if not a.is_impossible else "(no answer)"
            print(f"{a.score:.4f}  [{a.start}:{a.end}]  {shown}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import run_eval

    result = run_eval(
        args.paths,
        score=args.score,
        na_prob=args.na_prob,
        limit=args.limit,
        predictions=args.predictions,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result["scores"].items():
            print(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    result = run_bench(
        args.model_dir,
        data=args.data,
        questions=args.questions,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        output=args.output,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['machine']['cpu']} | onnxruntime {result['machine']['onnxruntime']}")
        for r in result["runs"]:
            print(
                f"{r['precision']:>13} on {r['device']}: latency p50 {r['latency_ms']['p50']:.2f} ms, "
                f"p90 {r['latency_ms']['p90']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms; "
                f"throughput {r['questions_per_s']:.1f} questions/s (batch {r['batch_size'] or 'default'})"
            )
    return 0


TUNE_QUESTIONS = 32  # of --questions: a pass over them per setting


def _cmd_tune(args: argparse.Namespace) -> int:
    from .tune import TUNING, tune

    say = None if args.quiet or args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    pairs = None
    if args.questions is not None:  # this deployment's own questions: a sample of a SQuAD-format file
        from .squad import load_squad

        questions = load_squad(args.questions)[1]
        if not questions:
            raise InputError(f"{args.questions} has no questions")
        n = min(TUNE_QUESTIONS, len(questions))
        pairs = [(q.question, q.context) for q in (questions[i * len(questions) // n] for i in range(n))]
    result = tune(args.model_dir, seconds=args.seconds, write=not args.dry_run, progress=say, pairs=pairs)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        c = result["chosen"]
        where = "not written (--dry-run)" if args.dry_run else f"kept in {Path(args.model_dir) / TUNING}"
        turns = result.get("in_turns") or {}
        ratios = zip(turns.get("settings", []), turns.get("times_faster") or [])
        x = next((x for setting, x in ratios if setting == c), 1.0)  # the defaults: 1.0
        beside = f" ({x:.2f}x the defaults in turns)" if x != 1.0 else ""
        print(
            f"{result['machine']['cpu']}: {c['precision']}, {c['threads']} thread(s), {c['batch_size']} window(s) "
            f"per call, {result['questions_per_s']:.1f} questions/s{beside}; {where}"
        )
    return 0


def _refuse(flags: Sequence[tuple[str, bool]], why: str) -> None:
    """An error naming the ``flags`` given (``(flag, given)``) that do not apply, and ``why``."""
    given = [flag for flag, present in flags if present]
    if given:
        raise InputError(f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {why}")


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise OnnxQAError(f"--ray needs the ray extra: pip install 'onnxqa[ray]' ({exc})") from exc


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import InProcess, OnRay, run_batch

    options: dict[str, object] = {}
    if args.handle_impossible_answer:
        options["handle_impossible_answer"] = True
    if args.max_answer_len is not None:
        options["max_answer_len"] = args.max_answer_len
    backend: InProcess | OnRay
    if args.ray is not None:
        _refuse([("--threads", args.threads is not None)], "with --ray: use --threads-per-actor")
        _need_ray()
        ray_options = {"actors": args.actors, "threads_per_actor": args.threads_per_actor}
        backend = OnRay(
            address=args.ray or None,
            device=args.device,
            precision=args.precision,
            **{name: value for name, value in ray_options.items() if value is not None},
        )
    else:
        given = [("--actors", args.actors is not None), ("--threads-per-actor", args.threads_per_actor is not None)]
        _refuse(given, "without --ray: use --threads")
        backend = InProcess(device=args.device, precision=args.precision, threads=args.threads)
    report = run_batch(
        args.model_dir,
        args.input,
        args.output,
        backend=backend,
        options=options,
        chunk_rows=args.chunk_rows,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
    )
    print(
        f"onnxqa batch: {report.answered} rows answered ({report.engine}, {report.seconds:.1f} s, "
        f"{report.rows_per_s:.1f} rows/s), {report.skipped} already done, {len(report.failed)} failed; "
        f"{report.rows} rows in {report.output}",
        file=sys.stderr,
    )
    for row_id, message in report.failed[:20]:
        print(f"  failed: {row_id}: {message}", file=sys.stderr)
    if len(report.failed) > 20:
        print(f"  ... and {len(report.failed) - 20} more (their error column says why)", file=sys.stderr)
    return 1 if report.failed else 0


def _batching(args: argparse.Namespace) -> BatchSettings:
    from .runtime import BatchSettings

    return BatchSettings(
        max_windows=args.max_batch_windows,
        max_call_ms=args.max_call_ms,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_queue_windows=args.max_queue_windows,
        max_request_windows=args.max_request_windows,
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.ray is not None:
        return _serve_on_ray(args)
    try:
        from .serve import run_server
    except ImportError as exc:
        raise OnnxQAError(f"onnxqa serve needs the serve extra: pip install 'onnxqa[serve]' ({exc})") from exc
    return run_server(  # type: ignore[no-any-return]
        args.model_dir,
        host=args.host,
        port=args.port,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batching=_batching(args),
        max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout,
        arena=args.arena,
        log_level=args.log_level,
        api_keys=args.api_key or [],
        api_key_file=args.api_key_file,
        protect_metrics=args.protect_metrics,
        max_documents=args.max_documents,
        workers=args.workers,
    )


def _serve_on_ray(args: argparse.Namespace) -> int:
    given = [("--workers", args.workers != 1), ("--log-level", args.log_level != DEFAULT_LOG_LEVEL)]
    _refuse(given, "with --ray: use --replicas, and Ray's own logging configuration")
    _need_ray()
    from .ray import serve_until_stopped

    return serve_until_stopped(  # type: ignore[no-any-return]
        args.model_dir,
        address=args.ray or None,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batching=_batching(args),
        arena=args.arena,
        max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout,
        api_keys=args.api_key or [],
        api_key_file=args.api_key_file,
        protect_metrics=args.protect_metrics,
        max_documents=args.max_documents,
    )


# ---------------------------------------------------------------------- the parser, one function per command


def _runtime_flags(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument(
        "--precision", default=precision, help=f"auto, fp32, int8, openvino-int8 or fp16 (default: {precision})"
    )
    p.add_argument("--threads", type=int, default=None, help="inference threads (onnxruntime intra-op, or OpenVINO's)")


def _per_device(cpu: object, cuda: object) -> str:
    return f"{cpu} on CPU, {cuda} on CUDA"


def _batch_size_flag(p: argparse.ArgumentParser) -> None:
    from .runtime import QAOptions

    sizes = [QAOptions().resolved(512, 512, device).batch_size for device in ("cpu", "cuda")]
    p.add_argument(
        "--batch-size", type=int, default=None, help=f"windows per inference call (default: {_per_device(*sizes)})"
    )


def _add_export(sub: argparse._SubParsersAction) -> None:
    from .export import INT8_METHODS, ExportConfig

    default = ExportConfig()
    p = sub.add_parser("export", help="export a Hugging Face QA checkpoint to an onnxqa model directory")
    p.add_argument("source", help="hub id (e.g. deepset/tinyroberta-squad2) or local checkpoint directory")
    p.add_argument("output_dir")
    precisions = ",".join(default.precisions)
    p.add_argument(
        "--precision",
        default=precisions,
        help=f"comma-separated subset of fp32,int8,openvino-int8,fp16 (default: {precisions}; openvino-int8 needs "
        "the openvino extra)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUTPUT_DIR if it is an onnxqa model directory (never any other directory)",
    )
    p.add_argument(
        "--tokenizer",
        metavar="PATH_OR_ID",
        default=default.tokenizer,
        help="take the tokenizer files from this directory or hub id (for checkpoints saved without them)",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=default.atol,
        help=f"max |onnx - torch| logit difference (default: {default.atol:g})",
    )
    p.add_argument("--opset", type=int, default=default.opset, help="ONNX opset (default: the exporter's choice)")
    p.add_argument(
        "--int8",
        choices=INT8_METHODS,
        default=default.int8,
        help="int8 quantization: static (ranges calibrated at export; answers independent of batching), "
        "static-ffn-fp32 (the same with the feed-forward output projections in fp32: closer to fp32's answers, "
        f"slower) or dynamic (scales per call, feed-forward outputs in fp32) (default: {default.int8})",
    )
    p.add_argument(
        "--calibration",
        metavar="FILE",
        default=default.calibration,
        help="SQuAD-format JSON of your domain to calibrate static int8 on (default: generated pairs, bundled)",
    )
    p.add_argument(
        "--calibration-pairs",
        type=int,
        default=default.calibration_pairs,
        help=f"questions of the calibration set used (default: {default.calibration_pairs})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_export)


def _add_ask(sub: argparse._SubParsersAction) -> None:
    from .runtime import QAOptions

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("model_dir")
    p.add_argument("-q", "--question", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-c", "--context")
    g.add_argument("--context-file")
    top_k = QAOptions().top_k
    p.add_argument("--top-k", type=int, default=top_k, help=f"answers to give (default: {top_k})")
    p.add_argument("--handle-impossible-answer", action="store_true", help="allow the empty (no answer) answer")
    p.add_argument("--json", action="store_true")
    _runtime_flags(p)
    p.set_defaults(func=_cmd_ask)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="EM/F1 on a SQuAD v1.1 or v2.0 file (official metric)")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL_DIR] DATA.json",
        help="a model directory and a SQuAD file, or only the SQuAD file with --score",
    )
    p.add_argument("--score", metavar="PREDICTIONS.json", help="score this predictions file instead of running a model")
    p.add_argument("--na-prob", metavar="NA_PROBS.json", help="with --score: no-answer probabilities (v2.0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--predictions", metavar="OUT.json", help="write predictions in the official format")
    _batch_size_flag(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _runtime_flags(p)
    p.set_defaults(func=_cmd_eval)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from .bench import DEFAULT_QUESTIONS

    p = sub.add_parser("bench", help="latency and throughput of a model directory")
    p.add_argument("model_dir")
    p.add_argument("--data", help="SQuAD file to draw questions from (default: built-in pairs)")
    p.add_argument(
        "-n",
        "--questions",
        type=int,
        default=DEFAULT_QUESTIONS,
        help=f"questions per measurement (default: {DEFAULT_QUESTIONS})",
    )
    _batch_size_flag(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", metavar="OUT.json", help="also write the JSON result here")
    _runtime_flags(p, precision="all")
    p.set_defaults(func=_cmd_bench)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from .serve import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DOCUMENTS, DEFAULT_REQUEST_TIMEOUT

    p = sub.add_parser("serve", help="answer questions over HTTP (needs the serve extra)")
    p.add_argument("model_dir")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default: {DEFAULT_HOST}, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default: {DEFAULT_PORT}")
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"larger request bodies get 413 (default: {DEFAULT_MAX_BODY_BYTES / 2**20:g} MiB)",
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT,
        help=f"seconds before a request gets 504 (default: {DEFAULT_REQUEST_TIMEOUT:g})",
    )
    p.add_argument(
        "--max-documents",
        type=int,
        default=DEFAULT_MAX_DOCUMENTS,
        help=f"documents per /v1/answer/documents request (default: {DEFAULT_MAX_DOCUMENTS})",
    )
    _scheduler_flags(p)
    _access_flags(p)
    p.add_argument(
        "--no-memory-arena",
        dest="arena",
        action="store_false",
        help="turn off onnxruntime's CPU memory arena: memory follows each call's need instead of keeping its peak",
    )
    p.add_argument("--log-level", default=DEFAULT_LOG_LEVEL, choices=LOG_LEVELS, help=f"default: {DEFAULT_LOG_LEVEL}")
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes sharing the port, each with its own model"
    )
    _runtime_flags(p)
    _serve_ray_flags(p)
    p.set_defaults(func=_cmd_serve)


def _scheduler_flags(p: argparse.ArgumentParser) -> None:
    from .runtime import BatchSettings

    default = BatchSettings()
    cpu, cuda = default.resolved("cpu"), default.resolved("cuda")
    g = p.add_argument_group("scheduling (with --ray: in each replica)")
    g.add_argument(
        "--max-batch-windows",
        type=int,
        default=None,
        help=f"windows per coalesced inference call (default: {_per_device(cpu.max_windows, cuda.max_windows)})",
    )
    g.add_argument(
        "--max-call-ms",
        type=float,
        default=None,
        help="fewer windows per call when more would take longer than this at the model's measured speed; 0: "
        f"no limit (default: {_per_device(f'{cpu.max_call_ms:g}', 'no limit')})",
    )
    g.add_argument(
        "--max-wait-ms",
        type=float,
        default=None,
        help="how long a call that is not full waits for more windows "
        f"(default: {_per_device(f'{cpu.max_wait_ms:g}', f'{cuda.max_wait_ms:g}')})",
    )
    g.add_argument(
        "--max-queue",
        type=int,
        default=default.max_queue,
        help=f"requests waiting before new ones get 503 (default: {default.max_queue})",
    )
    g.add_argument(
        "--max-queue-windows",
        type=int,
        default=default.max_queue_windows,
        help=f"windows waiting before new requests get 503 (default: {default.max_queue_windows})",
    )
    g.add_argument(
        "--max-request-windows",
        type=int,
        default=default.max_request_windows,
        help="requests with more windows get 413 (default: no cap)",
    )


def _access_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("API keys (also from the environment variable ONNXQA_API_KEY)")
    g.add_argument(
        "--api-key", action="append", metavar="KEY", help="a key the /v1/ routes accept (repeat for several)"
    )
    g.add_argument("--api-key-file", metavar="FILE", help="a file of keys, one per line")
    g.add_argument("--protect-metrics", action="store_true", help="/metrics needs a key too")


def _serve_ray_flags(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("Ray Serve (needs the ray extra)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="serve on Ray Serve: on the cluster at ADDRESS, or on a local Ray when none is given "
        "(refuses --workers and --log-level)",
    )
    r.add_argument("--replicas", type=int, default=1, help="with --ray: replicas of the model (default: 1)")
    r.add_argument("--num-cpus", type=float, default=1, help="with --ray: CPUs per replica (default: 1)")
    r.add_argument("--num-gpus", type=float, default=0, help="with --ray: GPUs per replica (default: 0)")


def _add_batch(sub: argparse._SubParsersAction) -> None:
    from .batch import DEFAULT_CHUNK_ROWS, OnRay
    from .runtime import QAOptions

    p = sub.add_parser(
        "batch",
        help="answer every question/context row of a JSONL or Parquet file",
        description="Answer every row (question, context, optional id and options) of INPUT into OUTPUT, "
        "the same format with answer, score, start, end, is_impossible and error added.",
    )
    p.add_argument("model_dir")
    p.add_argument("input", help="a .jsonl/.ndjson or .parquet/.pq file")
    p.add_argument("output", help="the same format as INPUT; written only when every row is done")
    p.add_argument("--resume", action="store_true", help="answer only the rows OUTPUT (or OUTPUT.partial/) lacks")
    p.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    p.add_argument("--handle-impossible-answer", action="store_true", help="allow the empty (no answer) answer")
    p.add_argument(
        "--max-answer-len",
        type=int,
        default=None,
        help=f"longest answer, in tokens (default: {QAOptions().max_answer_len})",
    )
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help=f"rows read, answered and written at a time (with --ray: rows per batch) (default: {DEFAULT_CHUNK_ROWS})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _runtime_flags(p)
    ray = OnRay()
    r = p.add_argument_group("Ray Data (needs the ray extra)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="answer on the Ray cluster at ADDRESS, or on a local Ray when none is given (refuses --threads)",
    )
    r.add_argument("--actors", type=int, default=None, help=f"with --ray: model actors (default: {ray.actors})")
    r.add_argument(
        "--threads-per-actor",
        type=int,
        default=None,
        help=f"with --ray: onnxruntime threads (CPUs) per actor (default: {ray.threads_per_actor})",
    )
    p.set_defaults(func=_cmd_batch)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="measure variants, threads and windows per call on this machine; load() and serve use the fastest",
    )
    p.add_argument("model_dir")
    p.add_argument("--seconds", type=float, default=30.0, help="time spent measuring, loading aside (default: 30)")
    p.add_argument(
        "--questions",
        metavar="FILE",
        default=None,
        help=f"time your own questions: a SQuAD-format JSON file, {TUNE_QUESTIONS} of its questions evenly spread "
        "(default: generated pairs as long as real ones)",
    )
    p.add_argument("--dry-run", action="store_true", help="measure and print, keep nothing")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no line per measurement")
    p.set_defaults(func=_cmd_tune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxqa", description="Fast extractive question answering with ONNX Runtime.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_export, _add_ask, _add_eval, _add_bench, _add_tune, _add_serve, _add_batch):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OnnxQAError as exc:
        print(f"onnxqa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"onnxqa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
