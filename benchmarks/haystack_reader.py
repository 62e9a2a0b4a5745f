"""Extractive QA behind a retriever: Haystack's torch reader and onnxqa's, in the same Haystack pipeline.

    python benchmarks/haystack_reader.py               # all 5,795 held-out questions, top 5 and top 20
    python benchmarks/haystack_reader.py --limit 30    # a quick check of the whole chain

The pipeline: ``InMemoryDocumentStore`` with every paragraph of the 19 held-out SQuAD 2.0 articles
(``dev-v2.0.reference-heldout.json``) -> ``InMemoryBM25Retriever`` (top 5, then top 20) -> reader:
  haystack-torch   Haystack's ExtractiveReader (haystack-ai 2.x core, PyTorch fp32), its defaults
  onnxqa-fp32      onnxqa.haystack.ExtractiveReader, fp32 variant, its defaults
  onnxqa-int8      the same, int8 variant
all on the trained reference model (exported to a temporary directory unless --model-dir is
given). For every question: the top answer (empty when the no-answer entry ranks first) scored with
the official SQuAD 2.0 metric against the question's own gold answers, wherever the retriever took
the reader; questions/s of the reader stage and of the whole pipeline; and how many questions get
exactly the torch reader's answers (documents, texts, offsets) from each onnxqa reader.
Writes benchmarks/results/haystack-<machine>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import importlib.util
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from common import HELDOUT, REFERENCE, RESULTS, log, machine_name

READERS = ("haystack-torch", "onnxqa-fp32", "onnxqa-int8")
WARMUP = 3  # questions run before timing starts, per pipeline


def torch_reader(checkpoint: Path) -> Any:
    """Haystack's own ExtractiveReader on the CPU."""
    from haystack.components.readers.extractive import ExtractiveReader
    from haystack.utils import ComponentDevice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "moving to transformers-haystack in 3.0"
        return ExtractiveReader(model=str(checkpoint), device=ComponentDevice.from_str("cpu"), token=None)


def make_reader(name: str, model_dir: Path, threads: int | None) -> Any:
    if name == "haystack-torch":
        return torch_reader(REFERENCE)
    from onnxqa.haystack import ExtractiveReader

    return ExtractiveReader(model_dir, device="cpu", precision=name.split("-")[1], threads=threads)


def timed(component: Any, clock: dict[str, float], key: str) -> None:
    """Make the pipeline's calls to ``component.run`` add their wall time to ``clock[key]``."""
    run = component.run

    @functools.wraps(run)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            clock[key] += time.perf_counter() - t0

    component.run = wrapper


def answer_key(answer: Any) -> tuple:
    offset = answer.document_offset
    return (
        answer.document.id if answer.document else None,
        answer.data,
        (offset.start, offset.end) if offset else None,
    )


def run_pipeline(store: Any, reader: Any, top_k: int, questions: list[Any]) -> dict[str, Any]:
    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever

    retriever = InMemoryBM25Retriever(document_store=store, top_k=top_k)
    pipeline = Pipeline()
    pipeline.add_component("retriever", retriever)
    pipeline.add_component("reader", reader)
    pipeline.connect("retriever.documents", "reader.documents")
    pipeline.warm_up()
    for q in questions[:WARMUP]:
        pipeline.run({"retriever": {"query": q.question}, "reader": {"query": q.question}})
    clock = {"retriever": 0.0, "reader": 0.0}
    timed(retriever, clock, "retriever")
    timed(reader, clock, "reader")
    predictions, na_probs, keys = {}, {}, {}
    t0 = time.perf_counter()
    for i, q in enumerate(questions):
        out = pipeline.run({"retriever": {"query": q.question}, "reader": {"query": q.question}})
        answers = out["reader"]["answers"]
        predictions[q.id] = (answers[0].data or "") if answers else ""  # "": the no-answer entry is first
        na_probs[q.id] = next((a.score for a in answers if a.data is None), 0.0)
        keys[q.id] = [answer_key(a) for a in answers]
        if (i + 1) % 500 == 0:
            log(f"  {i + 1}/{len(questions)}")
    seconds = time.perf_counter() - t0
    return {
        "questions": len(questions),
        "pipeline_seconds": seconds,
        "reader_seconds": clock["reader"],
        "retriever_seconds": clock["retriever"],
        "pipeline_qps": len(questions) / seconds,
        "reader_qps": len(questions) / clock["reader"],
        "predictions": predictions,
        "na_probs": na_probs,
        "keys": keys,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from haystack import Document
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from onnxqa.bench import machine_facts
    from onnxqa.squad import evaluate, load_squad, restrict

    facts = machine_facts()
    facts["torch"] = torch.__version__
    facts["torch_threads"] = torch.get_num_threads()
    import haystack

    facts["haystack"] = getattr(haystack, "__version__", None) or importlib.metadata.version("haystack-ai")
    dataset, questions = load_squad(args.data)
    paragraphs = [
        Document(content=p["context"], meta={"title": a["title"], "paragraph": i})
        for a in dataset["data"]
        for i, p in enumerate(a["paragraphs"])
    ]
    store = InMemoryDocumentStore()
    store.write_documents(paragraphs)
    if args.limit:
        questions = questions[: args.limit]
    scored = restrict(dataset, {q.id for q in questions})
    log(f"{len(paragraphs)} paragraphs, {len(questions)} questions, machine {facts['cpu']}")

    result: dict[str, Any] = {
        "machine": facts,
        "date": time.strftime("%Y-%m-%d"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "paragraphs": len(paragraphs),
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None and any(r.startswith("onnxqa") for r in args.readers):
            from onnxqa.export import ExportConfig, export

            model_dir = Path(tmp) / "model"
            log("exporting the reference model (fp32, int8)")
            export(str(REFERENCE), model_dir, ExportConfig(precisions=("fp32", "int8"), progress=False))
        keys: dict[tuple[str, int], dict[str, list]] = {}
        for name in args.readers:
            for top_k in args.top_k:
                log(f"{name}, BM25 top {top_k}")
                reader = make_reader(name, model_dir, args.threads)  # a component joins one pipeline only
                out = run_pipeline(store, reader, top_k, questions)
                scores = evaluate(scored, out.pop("predictions"), out.pop("na_probs"))
                keys[(name, top_k)] = out.pop("keys")
                out.update(
                    {k: scores.get(k) for k in ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "best_f1")}
                )
                result["runs"][f"{name}/top{top_k}"] = out
                log(f"  EM {out['exact']:.2f} F1 {out['f1']:.2f}, reader {out['reader_qps']:.2f} q/s")
                del reader
        for (name, top_k), mine in keys.items():
            torch_keys = keys.get(("haystack-torch", top_k))
            if torch_keys is None or name == "haystack-torch":
                continue
            run_ = result["runs"][f"{name}/top{top_k}"]
            run_["identical_to_torch"] = sum(mine[i] == torch_keys[i] for i in mine) / len(mine)
            run_["same_top_answer_as_torch"] = sum(mine[i][:1] == torch_keys[i][:1] for i in mine) / len(mine)
    return result


def table(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        "| retriever | reader | EM | F1 | reader q/s | pipeline q/s | vs torch (reader) | identical to torch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in runs.items():
        name, top = key.split("/")
        torch_run = runs.get(f"haystack-torch/{top}")
        speedup = f"{r['reader_qps'] / torch_run['reader_qps']:.2f}x" if torch_run else "-"
        same = f"{100 * r['identical_to_torch']:.2f} %" if "identical_to_torch" in r else "-"
        lines.append(
            f"| BM25 {top.replace('top', 'top ')} | {name} | {r['exact']:.2f} | {r['f1']:.2f} | "
            f"{r['reader_qps']:.2f} | {r['pipeline_qps']:.2f} | {speedup} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HELDOUT)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    parser.add_argument("--top-k", type=int, nargs="+", default=[5, 20], help="retriever top_k values")
    parser.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    parser.add_argument("--model-dir", type=Path, help="an onnxqa export of the reference model with fp32 and int8")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: one per core)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/haystack-<machine>.json)")
    args = parser.parse_args()
    result = run(args)
    out = args.out or RESULTS / f"haystack-{machine_name(result['machine'], words=2)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {out}")
    print(table(result))


if __name__ == "__main__":
    main()
