"""``onnxqa eval``: run a model over a SQuAD file and score it with the official metric."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ._errors import InputError
from ._paths import check_not_overlapping, write_text_atomic
from ._progress import Bar
from .squad import evaluate, load_squad, restrict, squad_version

__all__ = ["predict", "run_eval"]


def predict(
    qa: Any, questions: list[Any], *, v2: bool, batch_size: int | None = None, progress: bool = True
) -> tuple[dict[str, str], dict[str, float]]:
    """Official-format predictions (id -> text) and no-answer probabilities (id -> null score)."""
    preds: dict[str, str] = {}
    na_probs: dict[str, float] = {}
    bar = Bar(len(questions), "answering", enabled=progress)
    step = 256
    for first in range(0, len(questions), step):
        part = questions[first : first + step]
        out = qa.batch_with_null(
            [(q.question, q.context) for q in part], handle_impossible_answer=v2, batch_size=batch_size
        )
        for q, (answers, null) in zip(part, out):
            preds[q.id] = answers[0].text if answers else ""
            na_probs[q.id] = null
        bar.update(len(part))
    bar.close()
    return preds, na_probs


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from exc


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.score:
        if len(args.paths) != 1:
            raise InputError("with --score pass only the SQuAD file: onnxqa eval DATA.json --score PREDICTIONS.json")
        dataset, questions = load_squad(args.paths[0])
        if args.limit is not None:
            dataset = restrict(dataset, {q.id for q in questions[: args.limit]})
        preds = _read_json(args.score, "predictions file")
        na_probs = _read_json(args.na_prob, "no-answer probabilities file") if args.na_prob else None
        if not isinstance(preds, dict):
            raise InputError(f"{args.score} must map question ids to answer texts")
        return {
            "data": args.paths[0],
            "version": squad_version(dataset),
            "predictions": args.score,
            "scores": evaluate(dataset, preds, na_probs),
        }

    if len(args.paths) != 2:
        raise InputError("pass a model directory and a SQuAD file: onnxqa eval MODEL_DIR DATA.json")
    model_dir, data = args.paths
    if args.predictions:
        inputs = [("the model directory", Path(model_dir)), ("the SQuAD file", Path(data))]
        check_not_overlapping(Path(args.predictions), inputs, InputError)
    dataset, questions = load_squad(data)
    version = squad_version(dataset)
    if args.limit is not None:
        questions = questions[: args.limit]
        dataset = restrict(dataset, {q.id for q in questions})
    from .runtime import load

    qa = load(model_dir, device=args.device, precision=args.precision, threads=args.threads)
    t0 = time.perf_counter()
    preds, na_probs = predict(qa, questions, v2=version == "2.0", batch_size=args.batch_size, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    if args.predictions:
        write_text_atomic(Path(args.predictions), json.dumps(preds, ensure_ascii=False, indent=1))
    scores = evaluate(dataset, preds, na_probs if version == "2.0" else None, version)
    return {
        "model_dir": model_dir,
        "data": data,
        "version": version,
        "questions": len(questions),
        "device": qa.device,
        "precision": qa.precision,
        "seconds": seconds,
        "questions_per_s": len(questions) / seconds,
        "scores": scores,
    }
