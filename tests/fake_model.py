"""A model directory without torch: a real tokenizer and a small hand-built ONNX graph.

The graph maps each token on its own to a start and an end logit (embedding, ``layers`` dense
tanh layers, a QA head), so a window's logits never depend on its batch neighbours or on padding,
and its cost grows with its tokens like a transformer's does (without attention). ``layers`` and
``hidden`` set how slow it is: enough to test scheduling, batching and serving where timing
matters, in seconds, with no export. Its answers mean nothing; tests compare them with the same
model's answers through another path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from onnxqa._manifest import FORMAT_VERSION, MANIFEST, sha256_file

__all__ = ["make_fake_model"]


def _graph(vocab: int, hidden: int, layers: int, seed: int) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((vocab, hidden)) * 0.5).astype(np.float32), "embedding"),
        numpy_helper.from_array((rng.standard_normal((2, hidden)) * 0.5).astype(np.float32), "type_embedding"),
        numpy_helper.from_array(rng.standard_normal((hidden, 2)).astype(np.float32), "qa_head"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "input_ids"], ["tokens"]),
        helper.make_node("Gather", ["type_embedding", "token_type_ids"], ["types"]),
        helper.make_node("Add", ["tokens", "types"], ["h0"]),
    ]
    for layer in range(layers):
        weight = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{layer}"))
        nodes += [
            helper.make_node("MatMul", [f"h{layer}", f"w{layer}"], [f"m{layer}"]),
            helper.make_node("Tanh", [f"m{layer}"], [f"h{layer + 1}"]),
        ]
    nodes += [
        helper.make_node("MatMul", [f"h{layers}", "qa_head"], ["logits"]),
        helper.make_node("Gather", ["logits", "zero"], ["start_logits"], axis=2),
        helper.make_node("Gather", ["logits", "one"], ["end_logits"], axis=2),
    ]
    ids = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "sequence"])
        for name in ("start_logits", "end_logits")
    ]
    graph = helper.make_graph(nodes, "fake_qa", ids, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # onnx writes a newer one by default than onnxruntime reads
    onnx.checker.check_model(model)
    return model.SerializeToString()


def make_fake_model(
    tokenizer_dir: Path, out: Path, *, layers: int = 2, hidden: int = 64, seed: int = 0, dynamic_int8: bool = False
) -> Path:
    """A model directory at ``out`` with ``tokenizer_dir``'s tokenizer (a BERT WordPiece one) and a
    fake fp32 graph; ``dynamic_int8`` adds the same graph as an int8 variant marked dynamic (not
    batch-invariant), for the code paths of such variants."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(tokenizer_dir / "tokenizer.json", out / "tokenizer.json")
    vocab = len(json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    (out / "model.fp32.onnx").write_bytes(_graph(vocab, hidden, layers, seed))
    passed = {"status": "passed"}
    variants = {
        "fp32": {"file": "model.fp32.onnx", "sha256": sha256_file(out / "model.fp32.onnx"), "validation": passed}
    }
    if dynamic_int8:
        shutil.copy(out / "model.fp32.onnx", out / "model.int8.onnx")
        variants["int8"] = {
            "file": "model.int8.onnx",
            "sha256": sha256_file(out / "model.int8.onnx"),
            "validation": passed,
            "quantization": {"method": "dynamic"},
        }
    manifest = {
        "format": FORMAT_VERSION,
        "architecture": {
            "model_type": "bert",
            "num_layers": layers,
            "num_heads": 1,
            "hidden_size": hidden,
            "max_positions": 512,
            "vocab_size": vocab,
        },
        "tokenizer": {
            "file": "tokenizer.json",
            "sha256": sha256_file(out / "tokenizer.json"),
            "model_max_length": 512,
            "pad_token_id": 0,
            "cls_token_id": 101,
        },
        "variants": variants,
        "source": {"id": "fake (tests)"},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out
