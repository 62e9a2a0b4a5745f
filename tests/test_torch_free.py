"""``import onnxqa`` and answering never import torch, transformers, optimum, haystack, nor the serving
stack, Ray, pyarrow, pandas or tqdm."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import onnxqa
qa = onnxqa.load(sys.argv[1], device="cpu")
answers = qa("Who designed the bridge?", "The bridge was designed by Margaret Ellison in 1931.")
import asyncio
pair = ("Who designed it?", "It was designed by Ada.")
assert asyncio.run(qa.answer_async(*pair)) == qa(*pair)
qa.answer_documents("Who designed the bridge?", ["The bridge was designed by Margaret Ellison.", "Paris."])
qa.close()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in (
    "torch", "transformers", "optimum", "onnx", "fastapi", "uvicorn", "starlette", "prometheus_client",
    "ray", "pyarrow", "pandas", "tqdm", "haystack"
))
print(json.dumps({"answer": answers[0].text, "heavy": heavy}))
"""


def test_runtime_imports_no_torch(tiny):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answer"]
    assert result["heavy"] == [], f"the runtime imported {result['heavy']}"
