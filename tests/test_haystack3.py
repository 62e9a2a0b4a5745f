"""onnxqa's Haystack reader under Haystack 3, beside the suite's Haystack 2.

The development install pins haystack-ai 2.x, whose core still ships the torch reader the parity
tests compare with. This test installs haystack-ai 3 into a temporary folder (pip, so it needs
the package index: marked slow), runs the same reader, pipeline and YAML round trip there in a
subprocess that cannot import torch, and checks that the answers equal the ones Haystack 2 gets
here from the same reader. Run it with ``python -m pytest -m slow tests/test_haystack3.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline  # noqa: E402
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever  # noqa: E402
from haystack.document_stores.in_memory import InMemoryDocumentStore  # noqa: E402

from onnxqa.haystack import ExtractiveReader  # noqa: E402

TEXTS = [
    "The Harlow Bridge was designed by Margaret Ellison and opened to traffic in 1931.",
    "Paris is the capital of France.\fIts river is the Seine, which flows into the English Channel.",
    "The bridge spans the river Wend; Ellison also designed the station at Harlow in 1928.",
]
QUESTION = "Who designed the bridge?"

CHILD = r"""
import importlib.abc, importlib.metadata, json, sys

class NoTorch(importlib.abc.MetaPathFinder):  # a torch-free install of Haystack 3
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "optimum", "accelerate"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoTorch())
from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import DeserializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from onnxqa.haystack import ExtractiveReader

model, question, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
store = InMemoryDocumentStore()
store.write_documents([Document(content=t, meta={"page_number": 3}) for t in texts])
pipeline = Pipeline()
pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=3))
pipeline.add_component("reader", ExtractiveReader(model, device="cpu", top_k=4, max_seq_length=32, stride=8))
pipeline.connect("retriever.documents", "reader.documents")
inputs = {"retriever": {"query": question}, "reader": {"query": question}}

def answers(p):
    return [[a.document.content if a.document else None, a.data, a.score, a.meta,
             [a.document_offset.start, a.document_offset.end] if a.document_offset else None]
            for a in p.run(inputs)["reader"]["answers"]]

yaml = pipeline.dumps()
try:
    Pipeline.loads(yaml)
    refused = False
except DeserializationError:
    refused = True
loaded = Pipeline.loads(yaml, allowed_modules=["onnxqa.haystack"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "optimum"))
print(json.dumps({"version": importlib.metadata.version("haystack-ai"), "answers": answers(pipeline),
                  "loaded": answers(loaded), "refused_without_allowlist": refused, "heavy": heavy}))
"""


@pytest.mark.slow
def test_reader_works_in_haystack_3(tiny, tmp_path):
    target = tmp_path / "haystack3"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "haystack-ai>=3,<4"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, f"could not install haystack-ai 3:\n{install.stderr[-2000:]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny), QUESTION, json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["version"].startswith("3."), result["version"]
    assert result["heavy"] == []
    # Haystack 3 refuses classes from modules outside its allowlist unless told (README "Haystack")
    assert result["refused_without_allowlist"] is True

    # the same pipeline under this process's Haystack 2
    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t, meta={"page_number": 3}) for t in TEXTS])
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=3))
    pipeline.add_component("reader", ExtractiveReader(tiny, device="cpu", top_k=4, max_seq_length=32, stride=8))
    pipeline.connect("retriever.documents", "reader.documents")
    here = pipeline.run({"retriever": {"query": QUESTION}, "reader": {"query": QUESTION}})["reader"]["answers"]
    expected = [
        [
            # by content: Haystack 3 hashes other fields into Document.id than Haystack 2
            a.document.content if a.document else None,
            a.data,
            a.score,
            a.meta,
            [a.document_offset.start, a.document_offset.end] if a.document_offset else None,
        ]
        for a in here
    ]
    assert len(expected) == 5  # top_k 4 + the no-answer entry
    assert result["answers"] == expected
    assert result["loaded"] == expected
