"""Export a Hugging Face QA checkpoint to a self-contained onnxqa model directory.

load -> export ONNX -> optimize (fp32) -> validate against PyTorch -> quantize (int8)
-> optimize for GPU and convert (fp16) -> write tokenizer and manifest -> rename into place.

Heavy dependencies (torch, transformers, optimum, onnx) are imported here only, never by the
runtime. Everything is written into a hidden temporary directory beside OUTPUT_DIR and renamed
at the end, so an interrupted export leaves nothing that looks like a model directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._errors import ExportError, ValidationError
from .._manifest import FORMAT_VERSION, MANIFEST, PRECISIONS, sha256_file
from .._progress import Steps

__all__ = ["ExportConfig", "export"]

SUPPORTED = ("bert", "roberta", "distilbert")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# fused operators that prove the optimizer recognised attention and layer norm
ATTENTION_OPS = ("Attention", "MultiHeadAttention")
LAYERNORM_OPS = ("SkipLayerNormalization", "LayerNormalization", "EmbedLayerNormalization")


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What to export and how strictly to check it."""

    precisions: tuple[str, ...] = ("fp32", "int8")
    force: bool = False
    atol: float = 1e-4  # max |onnx - torch| on start/end logits of the fp32 graph
    min_agreement: float = 0.9  # warn when int8/fp16 answers agree with fp32 less often
    opset: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ExportError(
                f"precisions must be a non-empty subset of {', '.join(PRECISIONS)}, got {self.precisions}"
            )
        if not self.atol > 0:
            raise ExportError(f"atol must be positive, got {self.atol}")


def _resolve_source(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(f"{path} has no config.json: pass a Hugging Face checkpoint directory")
        return path
    if path.exists():
        raise ExportError(f"{path} is a file; pass a checkpoint directory or a hub id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=["*.json", "*.txt", "*.safetensors", "*.bin", "*.model"]))
    except Exception as exc:
        raise ExportError(
            f"{source!r} is not a local directory and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc}); check the id and the network, or pass a local checkpoint"
        ) from exc


def _weights_sha256(src: Path) -> str:
    files = sorted(
        p for p in src.iterdir() if p.name in WEIGHT_FILES or p.name.startswith("model-") and p.suffix == ".safetensors"
    )
    if not files:
        raise ExportError(f"{src} has no weights ({' or '.join(WEIGHT_FILES)})")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + sha256_file(p).encode())
    return digest.hexdigest()


def _architecture(config: Any) -> dict[str, Any]:
    mt = config.model_type
    if mt == "distilbert":
        layers, heads, hidden = config.n_layers, config.n_heads, config.dim
    else:
        layers, heads, hidden = config.num_hidden_layers, config.num_attention_heads, config.hidden_size
    positions = config.max_position_embeddings
    if mt == "roberta":  # positions start after the padding index
        positions -= config.pad_token_id + 1
    return {
        "model_type": mt,
        "num_layers": int(layers),
        "num_heads": int(heads),
        "hidden_size": int(hidden),
        "max_positions": int(positions),
        "vocab_size": int(config.vocab_size),
    }


def validation_pairs() -> list[tuple[str, str]]:
    """The bundled question/context pairs used to validate exports (and by `onnxqa bench` by default)."""
    text = resources.files("onnxqa.export").joinpath("validation_pairs.json").read_text(encoding="utf-8")
    return [(p["question"], p["context"]) for p in json.loads(text)]


def _write_manifest(work: Path, manifest: dict[str, Any]) -> None:
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _variant_entry(work: Path, file: str, precision: str, opset: int, fused: dict[str, int]) -> dict[str, Any]:
    return {
        "file": file,
        "precision": precision,
        "sha256": sha256_file(work / file),
        "bytes": (work / file).stat().st_size,
        "opset": opset,
        "fused_ops": fused,
    }


def _fused_counts(onnx_model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx_model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    keep = (
        ATTENTION_OPS
        + LAYERNORM_OPS
        + ("Gelu", "BiasGelu", "FastGelu", "MatMulInteger", "DynamicQuantizeLinear", "QAttention")
    )
    return {op: counts[op] for op in keep if op in counts}


def export(source: str, output_dir: str | os.PathLike[str], config: ExportConfig | None = None) -> dict[str, Any]:
    """Export ``source`` (hub id or checkpoint directory) to ``output_dir``; return the manifest.

    Raises:
        ExportError: bad source or output, unsupported architecture, or a failing step.
        ValidationError: the fp32 graph's logits differ from PyTorch's by more than ``atol``.
    """
    config = config or ExportConfig()
    out = Path(output_dir).expanduser()
    if out.exists() and not config.force:
        raise ExportError(f"{out} already exists; pass --force (force=True) to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    try:
        manifest = _export_into(source, work, config)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(work, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(work, out)
        return manifest
    except BaseException:  # also KeyboardInterrupt: leave nothing that looks complete
        shutil.rmtree(work, ignore_errors=True)
        raise


def _export_into(source: str, work: Path, config: ExportConfig) -> dict[str, Any]:
    steps = Steps(4 + len(config.precisions), enabled=config.progress)
    try:
        import onnx
        import onnxruntime
        import torch
        import transformers
        from onnxruntime.transformers.optimizer import optimize_model
        from optimum.exporters.onnx import onnx_export_from_model
        from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer
    except ImportError as exc:
        raise ExportError(f"export needs the export extra ({exc}); pip install 'onnxqa[export]'") from exc

    with steps.step(f"loading checkpoint {source}"):
        src = _resolve_source(source)
        hf_config = AutoConfig.from_pretrained(src)
        if hf_config.model_type not in SUPPORTED:
            raise ExportError(
                f"model type {hf_config.model_type!r} is not supported; onnxqa exports {', '.join(SUPPORTED)}"
            )
        tokenizer = AutoTokenizer.from_pretrained(src)
        if not tokenizer.is_fast:
            raise ExportError(f"{source} has no fast tokenizer (tokenizer.json); onnxqa needs one")
        if tokenizer.padding_side != "right":
            raise ExportError(f"tokenizer pads on the {tokenizer.padding_side}; onnxqa supports right padding only")
        weights = _weights_sha256(src)
        model = AutoModelForQuestionAnswering.from_pretrained(src).eval()
        arch = _architecture(hf_config)
        if len(tokenizer) > arch["vocab_size"]:
            raise ExportError(f"tokenizer has {len(tokenizer)} tokens, the model's embedding {arch['vocab_size']}")

    tokenizer_file = "tokenizer.json"
    (work / tokenizer_file).write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
    model_max_length = tokenizer.model_max_length
    if not isinstance(model_max_length, int) or model_max_length > arch["max_positions"]:
        model_max_length = arch["max_positions"]
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "task": "extractive-question-answering",
        "source": {"id": str(source), "weights_sha256": weights},
        "architecture": arch,
        "tokenizer": {
            "file": tokenizer_file,
            "sha256": sha256_file(work / tokenizer_file),
            "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "cls_token_id": tokenizer.cls_token_id,
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            "model_max_length": int(model_max_length),
            "padding_side": tokenizer.padding_side,
            "model_input_names": list(tokenizer.model_input_names),
        },
        "variants": {},
        "versions": {
            "onnxqa": __version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }

    raw = work / "raw"
    with steps.step("exporting the PyTorch graph to ONNX"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_export_from_model(
                model,
                raw,
                task="question-answering",
                opset=config.opset,
                do_validation=False,
                no_post_process=True,
                preprocessors=[tokenizer],
            )
        raw_model = raw / "model.onnx"
        raw_proto = onnx.load(raw_model, load_external_data=False)
        opset = next(o.version for o in raw_proto.opset_import if o.domain in ("", "ai.onnx"))
        uses_types = "token_type_ids" in [i.name for i in raw_proto.graph.input]
        del raw_proto
        arch["uses_token_type_ids"] = uses_types

    def optimized(use_gpu: bool) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optimize_model(
                str(raw_model),
                model_type="bert",
                num_heads=arch["num_heads"],
                hidden_size=arch["hidden_size"],
                opt_level=0,
                use_gpu=use_gpu,
            )

    fp32_file = "model.fp32.onnx"
    with steps.step("optimizing for CPU (fused attention, layer norm, GELU)"):
        opt = optimized(use_gpu=False)
        opt.save_model_to_file(str(work / fp32_file))
        fused = _fused_counts(opt.model)
        steps.note(", ".join(f"{k} {v}" for k, v in fused.items()))
        if not any(fused.get(op) for op in ATTENTION_OPS) or not any(fused.get(op) for op in LAYERNORM_OPS):
            raise ExportError(f"the optimizer fused no attention or layer norm ({fused}); graph not recognised")

    pairs = validation_pairs()
    with steps.step(f"validating fp32 against PyTorch on {len(pairs)} question/context pairs"):
        reference = _torch_logits(model, tokenizer, work / tokenizer_file, manifest, pairs, uses_types)
        fp32_logits = _onnx_logits(work / fp32_file, reference["inputs"])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(fp32_logits, reference["logits"]))
        steps.note(f"max |onnx - torch| = {diff:.2e} (tolerance {config.atol:.0e})")
        if not diff <= config.atol:
            raise ValidationError(
                f"fp32 ONNX logits differ from PyTorch by {diff:.3e} > {config.atol:.0e}; "
                "the export is wrong for this checkpoint, nothing was written"
            )
    entry = _variant_entry(work, fp32_file, "fp32", opset, fused)
    entry["validation"] = {
        "reference": "pytorch",
        "pairs": len(pairs),
        "windows": len(reference["inputs"]),
        "max_abs_diff": diff,
        "atol": config.atol,
        "passed": True,
    }
    manifest["variants"]["fp32"] = entry
    _write_manifest(work, manifest)

    if "int8" in config.precisions:
        with steps.step("quantizing to int8 and checking answers against fp32"):
            int8_file = "model.int8.onnx"
            kept = quantize_int8(work / fp32_file, work / int8_file)
            fused8 = _fused_counts(onnx.load(work / int8_file))
            manifest["variants"]["int8"] = _variant_entry(work, int8_file, "int8", opset, fused8)
            manifest["variants"]["int8"]["quantization"] = {
                "method": "dynamic",
                "weights": "int8, per channel",
                "activations": "uint8, per tensor, at run time",
                "kept_fp32": f"{len(kept)} feed-forward output MatMuls (inputs after GELU)",
            }
            _write_manifest(work, manifest)
            manifest["variants"]["int8"]["validation"] = _compare_answers(work, "int8", pairs, "cpu", config, steps)

    if "fp16" in config.precisions:
        with steps.step("optimizing for GPU and converting to fp16 (float32 inputs/outputs)"):
            from ..runtime._session import cuda_available

            fp16_file = "model.fp16.onnx"
            gpu = optimized(use_gpu=True)
            gpu.convert_float_to_float16(keep_io_types=True)
            gpu.save_model_to_file(str(work / fp16_file))
            manifest["variants"]["fp16"] = _variant_entry(work, fp16_file, "fp16", opset, _fused_counts(gpu.model))
            _write_manifest(work, manifest)
            if cuda_available():
                check = _compare_answers(work, "fp16", pairs, "cuda", config, steps)
                fp16_logits = _onnx_logits(work / fp16_file, reference["inputs"], "cuda")
                check["max_abs_diff_vs_fp32"] = max(
                    float(np.abs(a - b).max()) for a, b in zip(fp16_logits, fp32_logits)
                )
                steps.note(f"max |fp16 - fp32| = {check['max_abs_diff_vs_fp32']:.2e} (logits, CUDA)")
                manifest["variants"]["fp16"]["validation"] = check
            else:
                manifest["variants"]["fp16"]["validation"] = {
                    "skipped": "CUDA unavailable at export: fp16 runs on the CUDA execution provider only"
                }
                steps.note("fp16 not validated: no CUDA execution provider here")

    if "fp32" not in config.precisions:  # fp32 was the validated base of the others; drop its file
        (work / fp32_file).unlink()
        del manifest["variants"]["fp32"]
    shutil.rmtree(raw)
    _write_manifest(work, manifest)
    return manifest


def quantize_int8(fp32: Path, out: Path) -> list[str]:
    """Dynamic int8 quantization, per-channel weights; the MatMuls fed by GELU stay fp32.

    Chosen by measured accuracy on the reference model (``benchmarks/int8_variants.py``): on 1,200
    held-out questions per-tensor weights lost 2.5 F1 points, per-channel 0.9, per-channel with the
    feed-forward output projections (whose GELU inputs have the widest, most skewed ranges) kept
    in fp32 none.
    Returns the names of the MatMuls kept in fp32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(fp32, load_external_data=False).graph
    gelu_out = {o for n in graph.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
    kept = [n.name for n in graph.node if n.op_type == "MatMul" and n.input[0] in gelu_out and n.name]
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    quantize_dynamic(
        fp32,
        out,
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=kept,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return kept


def _torch_logits(
    model: Any,
    tokenizer: Any,
    tokenizer_path: Path,
    manifest: dict[str, Any],
    pairs: Sequence[tuple[str, str]],
    uses_types: bool,
) -> dict[str, Any]:
    import torch

    from ..runtime._windows import Windower

    windower = Windower(tokenizer_path.read_text(encoding="utf-8"), manifest["tokenizer"]["cls_token_id"])
    windows = windower.windows(pairs, max_seq_len=384, doc_stride=128, max_question_len=64)
    # also a short window size so the long context is split into several windows
    windows += windower.windows(pairs[-1:], max_seq_len=128, doc_stride=32, max_question_len=64)
    inputs, logits = [], []
    with torch.no_grad():
        for w in windows:
            feed = {"input_ids": w.input_ids[None], "attention_mask": np.ones_like(w.input_ids)[None]}
            if uses_types:
                feed["token_type_ids"] = w.type_ids[None]
            out = model(**{k: torch.from_numpy(v) for k, v in feed.items()})
            inputs.append(feed)
            logits.append(np.stack([out.start_logits[0].numpy(), out.end_logits[0].numpy()]))
    return {"inputs": inputs, "logits": logits}


def _onnx_logits(path: Path, inputs: Sequence[dict[str, np.ndarray]], device: str = "cpu") -> list[np.ndarray]:
    import onnxruntime as ort

    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    out = []
    for feed in inputs:
        start, end = session.run(["start_logits", "end_logits"], feed)
        out.append(np.stack([start[0], end[0]]))
    return out


def _compare_answers(
    work: Path,
    precision: str,
    pairs: Sequence[tuple[str, str]],
    device: str,
    config: ExportConfig,
    steps: Steps,
) -> dict[str, Any]:
    from ..runtime import QuestionAnswerer

    base = QuestionAnswerer(work, device="cpu", precision="fp32").batch(pairs, top_k=1)
    other = QuestionAnswerer(work, device=device, precision=precision).batch(pairs, top_k=1)
    same = sum(a[0].start == b[0].start and a[0].end == b[0].end for a, b in zip(base, other))
    agreement = same / len(pairs)
    steps.note(f"{precision} answers equal to fp32 on {same}/{len(pairs)} pairs")
    if agreement < config.min_agreement:
        warnings.warn(
            f"{precision} answers agree with fp32 on only {same}/{len(pairs)} validation pairs "
            f"(random or poorly conditioned weights quantize badly); measure with `onnxqa eval`",
            stacklevel=3,
        )
    return {
        "reference": "fp32",
        "device": device,
        "pairs": len(pairs),
        "answers_equal": same,
        "agreement": agreement,
        "passed": agreement >= config.min_agreement,
    }
