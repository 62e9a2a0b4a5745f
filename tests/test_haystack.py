"""onnxqa's Haystack reader, and ``POST /v1/answer/documents`` of ``onnxqa serve``, give the answers of
Haystack's own torch ``ExtractiveReader`` on the same weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline  # noqa: E402

from onnxqa.haystack import ExtractiveReader  # noqa: E402

from conftest import REFERENCE, SEEDS, shared_path  # noqa: E402
from haystack_reference import torch_reader  # noqa: E402
from parity_cases import NON_ASCII  # noqa: E402

# Random QA heads give logits far larger than a trained model's. For tinyroberta the best spans'
# sigmoid(0.1 * (start + end)) are then 1 - 1e-7: equal in float32, and Haystack's order among
# equal scores is torch.topk's, which is unspecified. A smaller calibration factor keeps its
# scores apart, as a trained model's are at the default 0.1.
# DeBERTa-v3 (2 layers) the same: at 0.1 several spans score 1.0, and which of two overlapping
# ones Haystack's overlap filter keeps then depends on that order.
CALIBRATION = {"tinyroberta-squad2": 0.05, "deberta-v3": 0.05}


def _queries(squad: list[dict]) -> list[tuple[str, list[Document], dict]]:
    contexts = sorted({q["context"] for q in squad}, key=len)
    middle = len(contexts) // 2
    long_doc = Document(content=contexts[-1], meta={"source": "long"})  # several windows of 128 tokens
    pages = Document(content="Introduction.\f" + "\f".join(contexts[middle : middle + 2]), meta={"page_number": 7})
    foreign = [Document(content=context) for _, context in NON_ASCII]
    one = squad[len(squad) // 3]
    others = [Document(content=c) for c in contexts[middle - 40 : middle - 36]]
    mixed = [pages, foreign[0], long_doc, foreign[2], foreign[1]]
    small = {"max_seq_length": 128, "stride": 32}
    return [
        (one["question"], [Document(content=one["context"]), *others], {}),
        (squad[-1]["question"], mixed, small),
        (NON_ASCII[0][0], mixed, {**small, "top_k": 3, "answers_per_seq": 5, "no_answer": False}),
        (squad[7]["question"], mixed, {**small, "overlap_threshold": None, "top_k": 8, "score_threshold": 0.5}),
        # a question of more than half the window: Haystack's truncation cuts the question too
        (" ".join(q["question"] for q in squad[:6]), mixed[:2], {"max_seq_length": 96, "stride": 16}),
    ]


def _key(answer) -> tuple:
    offset = answer.document_offset
    return (
        answer.document.id if answer.document else None,
        answer.data,
        (offset.start, offset.end) if offset else None,
        answer.meta,
    )


def _http_key(answer: dict) -> tuple:
    impossible = answer["is_impossible"]
    page = answer["page_number"]
    return (
        None if impossible else answer["id"],
        None if impossible else answer["text"],
        None if impossible else (answer["start"], answer["end"]),
        {"answer_page_number": page} if page is not None else {},
    )


def _differences(reference, ours, atol=1e-4) -> str | None:
    """Haystack's answers against ours: ExtractedAnswer objects, or the JSON answers of the HTTP route."""
    a = [_key(x) for x in reference]
    b = [_http_key(y) if isinstance(y, dict) else _key(y) for y in ours]
    if a != b:
        return f"answers differ:\n  haystack {a}\n  onnxqa   {b}"
    for x, y in zip(reference, ours):
        score = y["score"] if isinstance(y, dict) else y.score
        if abs(x.score - score) > atol:
            return f"score {score} vs haystack's {x.score} for {_key(x)}"
    return None


class _Http:
    """``POST /v1/answer/documents`` of an app serving ``model_dir`` (in process), with Haystack's
    run arguments: a ``None`` or ``0`` number means the default there, so it is left out of the
    request (``no_answer=False`` is taken at its word, as Haystack does)."""

    def __init__(self, model_dir, calibration_factor: float = 0.1) -> None:
        from fastapi.testclient import TestClient

        from onnxqa.serve import create_app

        self.client = TestClient(create_app(model_dir, device="cpu", precision="fp32"))
        self.calibration_factor = calibration_factor

    def run(self, query: str, documents: list[Document], **options) -> list[dict]:
        body = {
            "question": query,
            "documents": [{"content": d.content, "id": d.id, "meta": d.meta} for d in documents],
            "calibration_factor": self.calibration_factor,
            **{k: v for k, v in options.items() if v or isinstance(v, bool)},
        }
        r = self.client.post("/v1/answer/documents", json=body)
        assert r.status_code == 200, r.text
        return r.json()["answers"]


@pytest.mark.parametrize("seed", [*SEEDS, "xlm-roberta", "deberta-v3"])
def test_answers_equal_haystack_reader(seed, store, squad_v2):
    calibration = CALIBRATION.get(seed, 0.1)
    reference = torch_reader(store.checkpoint(seed), calibration_factor=calibration)
    reader = ExtractiveReader(store.exported(seed), device="cpu", precision="fp32", calibration_factor=calibration)
    http = _Http(store.exported(seed), calibration)
    failures, answered = [], 0
    for question, documents, options in _queries(squad_v2):
        theirs = reference.run(query=question, documents=documents, **options)["answers"]
        ours = reader.run(query=question, documents=documents, **options)["answers"]
        answered += len(ours)
        for how, answers in (("reader", ours), ("HTTP", http.run(question, documents, **options))):
            problem = _differences(theirs, answers)
            if problem:
                failures.append(f"{how} {question[:40]!r} {options}: {problem}")
    assert not failures, "\n".join(failures)
    assert answered > 30
    pages = [a for a in ours if a.meta.get("answer_page_number")]
    assert pages, "some answers must come from the paged document"


def test_trained_model_equals_haystack_reader(store):
    """The trained reference model at Haystack's defaults, on SQuAD questions with five paragraphs each."""
    data = json.loads(shared_path("data", "squad", "dev-v2.0.reference-heldout.json").read_text(encoding="utf-8"))
    reference = torch_reader(store.checkpoint(REFERENCE))
    reader = ExtractiveReader(store.exported(REFERENCE), device="cpu", precision="fp32")
    http = _Http(store.exported(REFERENCE))
    failures, n = [], 0
    for article in data["data"][:4]:
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for i in range(0, len(article["paragraphs"]), 7):
            question = article["paragraphs"][i]["qas"][0]["question"]
            documents = [Document(content=c) for c in (paragraphs[i:] + paragraphs[:i])[:5]]
            theirs = reference.run(query=question, documents=documents)["answers"]
            n += 1
            for how, ours in (
                ("reader", reader.run(query=question, documents=documents)["answers"]),
                ("HTTP", http.run(question, documents)),
            ):
                problem = _differences(theirs, ours)
                if problem:
                    failures.append(f"{how} {question!r}: {problem}")
    assert n >= 10
    assert not failures, "\n".join(failures)


def test_run_arguments_combine_like_haystack(tiny):
    reader = ExtractiveReader(tiny, device="cpu", top_k=2, overlap_threshold=None)
    docs = [Document(content="The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931.")]
    assert len(reader.run(query="Who designed it?", documents=docs)["answers"]) == 3  # 2 + no-answer
    assert len(reader.run(query="Who designed it?", documents=docs, top_k=0)["answers"]) == 3  # 0: the default
    literal = ExtractiveReader(tiny, device="cpu", top_k=2, zero_means_default=False)
    only_null = literal.run(query="Who designed it?", documents=docs, top_k=0)["answers"]
    assert [(a.data, a.score) for a in only_null] == [(None, 1.0)]
    assert reader.run(query="Who designed it?", documents=[])["answers"] == []
    # Haystack's reader says it skips documents without content, then fails; this one skips them
    skipped = reader.run(query="Who designed it?", documents=[Document(content=None), *docs])["answers"]
    assert [a.document_offset for a in skipped] == [
        a.document_offset for a in reader.run(query="Who designed it?", documents=docs)["answers"]
    ]


def test_serialization_and_yaml_pipeline(tiny):
    reader = ExtractiveReader(tiny, device="cpu", precision="int8", top_k=4, overlap_threshold=0.5, score_threshold=0.1)
    data = reader.to_dict()
    assert data["type"] == "onnxqa.haystack.ExtractiveReader"
    assert data["init_parameters"]["overlap_threshold"] == 0.5 and data["init_parameters"]["device"] == "cpu"
    again = ExtractiveReader.from_dict(data)
    assert again.to_dict() == data

    pipeline = Pipeline()
    pipeline.add_component("reader", reader)
    loaded = Pipeline.loads(pipeline.dumps())
    docs = [Document(content="The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931.")]
    answers = loaded.run({"reader": {"query": "Who designed the bridge?", "documents": docs}})["reader"]["answers"]
    direct = reader.run(query="Who designed the bridge?", documents=docs)["answers"]
    assert [(a.data, a.score) for a in answers] == [(a.data, a.score) for a in direct]
    assert math.isclose(sum(a.score >= 0.1 for a in answers), len(answers))


def test_haystack_device_objects_are_accepted(tiny):
    from haystack.utils import ComponentDevice

    reader = ExtractiveReader(tiny, device=ComponentDevice.from_str("cpu"))
    assert reader.to_dict()["init_parameters"]["device"] == "cpu"


PIPELINE_WITHOUT_TORCH = r"""
import importlib.abc, json, sys

class NoTorch(importlib.abc.MetaPathFinder):  # as if torch and transformers were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "optimum", "accelerate"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoTorch())
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from onnxqa.haystack import ExtractiveReader

store = InMemoryDocumentStore()
store.write_documents([Document(content="The Harlow Bridge was designed by Margaret Ellison."),
                       Document(content="Paris is the capital of France.")])
pipeline = Pipeline()
pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=2))
pipeline.add_component("reader", ExtractiveReader(sys.argv[1], top_k=1))
pipeline.connect("retriever.documents", "reader.documents")
q = "Who designed the bridge?"
out = pipeline.run({"retriever": {"query": q}, "reader": {"query": q}})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optimum"))
print(json.dumps({"n": len(out["reader"]["answers"]), "heavy": heavy}))
"""


def test_reader_runs_in_a_pipeline_without_torch(tiny):
    out = subprocess.run(
        [sys.executable, "-c", PIPELINE_WITHOUT_TORCH, str(tiny)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"n": 2, "heavy": []}
