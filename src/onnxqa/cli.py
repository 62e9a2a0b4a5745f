"""The ``onnxqa`` command: export, ask, eval, bench, batch, serve. Each command adapts its arguments to one
typed function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._errors import InputError, OnnxQAError

if TYPE_CHECKING:
    from .runtime import QuestionAnswerer

__all__ = ["main"]


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
                f"{r['precision']:>5} on {r['device']}: latency p50 {r['latency_ms']['p50']:.2f} ms, "
                f"p90 {r['latency_ms']['p90']:.2f} ms, p99 {r['latency_ms']['p99']:.2f} ms; "
                f"throughput {r['questions_per_s']:.1f} questions/s (batch {r['batch_size'] or 'default'})"
            )
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    options: dict[str, object] = {}
    if args.handle_impossible_answer:
        options["handle_impossible_answer"] = True
    if args.max_answer_len is not None:
        options["max_answer_len"] = args.max_answer_len
    if args.ray is not None:
        _need_ray()
    report = run_batch(
        args.model_dir,
        args.input,
        args.output,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        options=options,
        chunk_rows=args.chunk_rows,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        ray=args.ray is not None,
        ray_address=args.ray or None,
        actors=args.actors,
        threads_per_actor=args.threads_per_actor,
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


def _need_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        raise OnnxQAError(f"--ray needs the ray extra: pip install 'onnxqa[ray]' ({exc})") from exc


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.ray is not None:
        _need_ray()
        from .ray._serve import serve_until_stopped

        return serve_until_stopped(
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
            max_batch_size=args.max_batch_size,
            batch_wait_timeout_s=(args.max_wait_ms or 0.0) / 1000,
            max_queued_requests=args.max_queue,
            max_body_bytes=args.max_body_bytes,
            request_timeout=args.request_timeout,
        )
    try:
        from .serve import run_server
    except ImportError as exc:
        raise OnnxQAError(f"onnxqa serve needs the serve extra: pip install 'onnxqa[serve]' ({exc})") from exc
    from .runtime import BatchSettings

    batching = BatchSettings(max_windows=args.max_batch_windows, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue)
    return run_server(
        args.model_dir,
        host=args.host,
        port=args.port,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        batching=batching,
        max_body_bytes=args.max_body_bytes,
        request_timeout=args.request_timeout,
        arena=args.arena,
        log_level=args.log_level,
    )


def _runtime_flags(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: auto")
    p.add_argument("--precision", default=precision, help=f"auto, fp32, int8 or fp16 (default: {precision})")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onnxqa", description="Fast extractive question answering with ONNX Runtime.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export a Hugging Face QA checkpoint to an onnxqa model directory")
    p.add_argument("source", help="hub id (e.g. deepset/tinyroberta-squad2) or local checkpoint directory")
    p.add_argument("output_dir")
    p.add_argument(
        "--precision", default="fp32,int8", help="comma-separated subset of fp32,int8,fp16 (default: fp32,int8)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUTPUT_DIR if it is an onnxqa model directory (never any other directory)",
    )
    p.add_argument(
        "--tokenizer",
        metavar="PATH_OR_ID",
        default=None,
        help="take the tokenizer files from this directory or hub id (for checkpoints saved without them)",
    )
    p.add_argument("--atol", type=float, default=1e-4, help="max |onnx - torch| logit difference (default: 1e-4)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's choice)")
    p.add_argument(
        "--int8",
        choices=("static", "dynamic"),
        default="static",
        help="int8 quantization: static (ranges calibrated at export; answers independent of batching) or "
        "dynamic (scales per call, feed-forward outputs in fp32) (default: static)",
    )
    p.add_argument(
        "--calibration",
        metavar="FILE",
        default=None,
        help="SQuAD-format JSON of your domain to calibrate static int8 on (default: generated pairs, bundled)",
    )
    p.add_argument(
        "--calibration-pairs", type=int, default=200, help="questions of the calibration set used (default: 200)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("ask", help="answer one question")
    p.add_argument("model_dir")
    p.add_argument("-q", "--question", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-c", "--context")
    g.add_argument("--context-file")
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--handle-impossible-answer", action="store_true", help="allow the empty (no answer) answer")
    p.add_argument("--json", action="store_true")
    _runtime_flags(p)
    p.set_defaults(func=_cmd_ask)

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
    p.add_argument(
        "--batch-size", type=int, default=None, help="windows per inference call (default: 1 on CPU, 64 on CUDA)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _runtime_flags(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("bench", help="latency and throughput of a model directory")
    p.add_argument("model_dir")
    p.add_argument("--data", help="SQuAD file to draw questions from (default: built-in pairs)")
    p.add_argument("-n", "--questions", type=int, default=200, help="questions per measurement (default: 200)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="windows per inference call (default: 1 on CPU, 64 on CUDA)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", metavar="OUT.json", help="also write the JSON result here")
    _runtime_flags(p, precision="all")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("serve", help="answer questions over HTTP (needs the serve extra)")
    p.add_argument("model_dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.add_argument(
        "--max-body-bytes", type=int, default=2 * 1024 * 1024, help="larger request bodies get 413 (default: 2 MiB)"
    )
    p.add_argument(
        "--max-batch-windows",
        type=int,
        default=None,
        help="windows per coalesced inference call (default: 4 on CPU, 128 on CUDA)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=None,
        help="how long a request waits for others to join its call (default: 0 on CPU, 2 on CUDA)",
    )
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting before new ones get 503 (default: 256)")
    p.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds before a request gets 504 (default: 30)"
    )
    p.add_argument(
        "--no-memory-arena",
        dest="arena",
        action="store_false",
        help="turn off onnxruntime's CPU memory arena: memory follows each call's need instead of keeping its peak",
    )
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    r = p.add_argument_group("Ray Serve (needs the ray extra)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="serve on Ray Serve: on the cluster at ADDRESS, or on a local Ray when none is given",
    )
    r.add_argument("--replicas", type=int, default=1, help="with --ray: replicas of the model (default: 1)")
    r.add_argument("--num-cpus", type=float, default=1, help="with --ray: CPUs per replica (default: 1)")
    r.add_argument("--num-gpus", type=float, default=0, help="with --ray: GPUs per replica (default: 0)")
    r.add_argument(
        "--max-batch-size", type=int, default=16, help="with --ray: requests coalesced into one call (default: 16)"
    )
    _runtime_flags(p)
    p.set_defaults(func=_cmd_serve)

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
    p.add_argument("--max-answer-len", type=int, default=None, help="longest answer, in tokens (default: 15)")
    p.add_argument(
        "--chunk-rows",
        type=int,
        default=256,
        help="rows read, answered and written at a time (with --ray: rows per batch) (default: 256)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    r = p.add_argument_group("Ray Data (needs the ray extra)")
    r.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="answer on the Ray cluster at ADDRESS, or on a local Ray when none is given",
    )
    r.add_argument("--actors", type=int, default=2, help="with --ray: model actors (default: 2)")
    r.add_argument(
        "--threads-per-actor", type=int, default=1, help="with --ray: onnxruntime threads (CPUs) per actor (default: 1)"
    )
    _runtime_flags(p)
    p.set_defaults(func=_cmd_batch)
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
