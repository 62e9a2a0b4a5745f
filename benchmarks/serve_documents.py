"""Answers across documents over HTTP: `POST /v1/answer/documents` at 16 clients against the
embedded `qa.answer_documents` over the same queries.

    python benchmarks/serve_documents.py                        # the reference model, int8, 1,000 questions
    python benchmarks/serve_documents.py --model-dir out/my-model --questions 300

The queries: the first ``--questions`` held-out SQuAD 2.0 questions (``dev-v2.0.reference-heldout``),
each with the ``--top-k`` paragraphs that Haystack's ``InMemoryBM25Retriever`` finds for it among
all held-out paragraphs (retrieval done once, before timing). In one run on one machine:
  1. embedded: ``qa.answer_documents(question, passages)`` one query after another (queries/s);
     its answers are the reference;
  2. `onnxqa serve` on 127.0.0.1; ``--clients`` clients each send queries one after another over a
     keep-alive connection until every query was sent ``--rounds`` times; every answer list
     (texts, offsets, documents, ids, scores) is compared with the embedded one.
Writes a JSON file (--output) and prints the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import HELDOUT, REFERENCE, RESULTS, Connection, free_port, log, start_server, wait_ready


def retrieve(questions: int, top_k: int) -> list[tuple[str, list[dict[str, str]]]]:
    """(question, passages) for the first held-out questions, passages from BM25 over all paragraphs."""
    from haystack import Document
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    data = json.loads(HELDOUT.read_text(encoding="utf-8"))
    paragraphs = [p for a in data["data"] for p in a["paragraphs"]]
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=p["context"]) for p in paragraphs])
    retriever = InMemoryBM25Retriever(document_store=store, top_k=top_k)
    queries = []
    for question in (q["question"] for p in paragraphs for q in p["qas"]):
        found = retriever.run(query=question)["documents"]
        queries.append((question, [{"content": d.content, "id": d.id} for d in found]))
        if len(queries) == questions:
            break
    return queries


def as_dicts(answers: list[Any]) -> list[dict[str, Any]]:
    keys = ("text", "score", "start", "end", "document", "id", "page_number")
    return [{k: getattr(a, k) for k in keys} | {"is_impossible": a.is_impossible} for a in answers]


def embedded(model_dir: Path, precision: str, queries: list[tuple[str, list[dict[str, str]]]]) -> dict[str, Any]:
    import onnxqa

    with onnxqa.load(model_dir, device="cpu", precision=precision) as qa:
        docs = [[onnxqa.Document(d["content"], id=d["id"]) for d in passages] for _, passages in queries]
        for (question, _), passages in list(zip(queries, docs))[:5]:
            qa.answer_documents(question, passages)
        t0 = time.perf_counter()
        answers = [as_dicts(qa.answer_documents(question, passages)) for (question, _), passages in zip(queries, docs)]
        seconds = time.perf_counter() - t0
    return {
        "queries": len(queries),
        "seconds": round(seconds, 3),
        "queries_per_s": round(len(queries) / seconds, 2),
        "answers": answers,
    }


async def load(port: int, clients: int, bodies: list[bytes], rounds: int, expected: list[Any]) -> dict[str, Any]:
    order = [i for _ in range(rounds) for i in range(len(bodies))]
    sent, errors, latencies = 0, 0, []

    async def client() -> None:
        nonlocal sent, errors
        conn = await Connection.open("127.0.0.1", port)
        try:
            while sent < len(order):
                i = order[sent]
                sent += 1
                t = time.perf_counter()
                status, body = await conn.request("POST", "/v1/answer/documents", bodies[i])
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    errors += 1
                else:
                    answered.append((i, body))  # compared after the phase: the client stays light
        finally:
            conn.close()

    answered: list[tuple[int, bytes]] = []
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - t0
    not_identical = sum(json.loads(body)["answers"] != expected[i] for i, body in answered)
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(order),
        "seconds": round(seconds, 3),
        "queries_per_s": round(len(order) / seconds, 2),
        "errors": errors,
        "not_identical": not_identical,
        "latency_ms": {
            f"p{q}": round(1000 * latencies[int(len(latencies) * q / 100) - (q == 100)], 2) for q in (50, 90, 99)
        },
    }


def served(
    model_dir: Path, precision: str, queries: list[Any], expected: list[Any], args: argparse.Namespace
) -> dict[str, Any]:
    port = free_port()
    proc = start_server(model_dir, precision, port, args.server_args.split())
    try:
        asyncio.run(wait_ready(port, proc))
        bodies = [json.dumps({"question": q, "documents": passages}).encode() for q, passages in queries]
        asyncio.run(load(port, args.clients, bodies[:8], 1, expected[:8]))  # warm-up
        result = asyncio.run(load(port, args.clients, bodies, args.rounds, expected))
    finally:
        proc.terminate()
        result_exit = proc.wait(60)
    return result | {"server_exit_code": result_exit}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, help="an exported directory (default: export the reference model)")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--questions", type=int, default=1000)
    ap.add_argument("--top-k", type=int, default=5, help="passages per question from BM25 (default: 5)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1, help="times each query is sent to the server")
    ap.add_argument("--server-args", default="", help="more `onnxqa serve` flags, space-separated")
    ap.add_argument("--output", type=Path, default=RESULTS / "serve-documents.json")
    args = ap.parse_args()

    log(f"BM25 top {args.top_k} for {args.questions} held-out questions")
    queries = retrieve(args.questions, args.top_k)
    with tempfile.TemporaryDirectory(prefix="onnxqa-documents-") as tmp:
        model_dir = args.model_dir or export_reference(Path(tmp))
        log(f"embedded answer_documents ({args.precision})")
        emb = embedded(model_dir, args.precision, queries)
        log(f"embedded: {emb['queries_per_s']} queries/s; now over HTTP at {args.clients} clients")
        srv = served(model_dir, args.precision, queries, emb.pop("answers"), args)
    from onnxqa.bench import machine_facts

    summary = {
        "embedded_queries_per_s": emb["queries_per_s"],
        "http_queries_per_s": srv["queries_per_s"],
        "ratio": round(srv["queries_per_s"] / emb["queries_per_s"], 3),
        "errors": srv["errors"],
        "not_identical": srv["not_identical"],
        "http_latency_ms": srv["latency_ms"],
    }
    out = {
        "machine": machine_facts(),
        "date": time.strftime("%Y-%m-%d"),
        "model": str(args.model_dir) if args.model_dir else "minilm-l6-squad-ref (trained reference model)",
        "precision": args.precision,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "summary": summary,
        "embedded": emb,
        "served": srv,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))


def export_reference(tmp: Path) -> Path:
    from onnxqa.export import ExportConfig, export

    log("exporting the reference model (fp32, int8)")
    export(str(REFERENCE), tmp / "onnx", ExportConfig(precisions=("fp32", "int8"), progress=False))
    return tmp / "onnx"


if __name__ == "__main__":
    main()
