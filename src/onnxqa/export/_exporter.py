"""Export a Hugging Face QA checkpoint to a self-contained onnxqa model directory.

The steps, one function each, run by :func:`export`:

    load -> export ONNX -> optimize (fp32) -> validate against PyTorch -> calibrate and quantize
    (int8) -> optimize for GPU and convert (fp16) -> manifest -> rename into place

Heavy dependencies (torch, transformers, optimum, onnx) are imported here only, never by the
runtime. Everything is written into a hidden temporary directory beside OUTPUT_DIR and renamed
at the end, so an interrupted export leaves nothing that looks like a model directory; an
existing OUTPUT_DIR is replaced only with ``force`` and only when it is an onnxqa model directory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._errors import ExportError, ValidationError
from .._manifest import FORMAT_VERSION, MANIFEST, PRECISIONS, sha256_file
from .._paths import check_not_overlapping, is_model_dir
from .._progress import Steps
from ..runtime import Windower
from ._checks import check_variant, model_inputs, onnx_logits, torch_reference
from ._families import FUSIONS, family_of
from ._io import data_file, is_large, save_onnx
from ._openvino import OPENVINO_FILE, quantize_openvino, require_openvino
from ._pairs import calibration_pairs, check_pairs, validation_pairs
from ._passes import INT8_PASSES, disabled_optimizers, run_passes
from ._quantize import CALIBRATIONS, SMOOTH_ALPHA, gelu_fed_matmuls, quantize_dynamic_int8, quantize_static_int8
from ._source import Checkpoint, load_checkpoint, resolve

__all__ = ["ExportConfig", "export", "quantize_int8"]

# fused operators that prove the optimizer recognised attention and layer norm
ATTENTION_OPS = FUSIONS["attention"]
LAYERNORM_OPS = FUSIONS["layer norm"]
_COUNTED = (
    ATTENTION_OPS
    + LAYERNORM_OPS
    + ("Gelu", "BiasGelu", "FastGelu", "MatMul", "MatMulInteger", "DynamicQuantizeLinear", "QAttention")
    + ("QuantizeLinear", "DequantizeLinear", "MatMulIntegerToFloat")
)
# static-ffn-fp32: static, with the feed-forward output MatMuls (fed by GELU) kept in fp32: closer to
# fp32's answers, slower (docs/benchmarks.md, "int8 closer to fp32")
INT8_METHODS = ("static", "static-ffn-fp32", "dynamic")
_NO_CUDA = {
    "status": "unvalidated",
    "reason": "CUDA unavailable at export: fp16 runs on the CUDA execution provider only; "
    "export on a machine with CUDA to validate it",
}
FP32_FILE, INT8_FILE, FP16_FILE, TOKENIZER_FILE = (
    "model.fp32.onnx",
    "model.int8.onnx",
    "model.fp16.onnx",
    "tokenizer.json",
)


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """What to export and how strictly to check it.

    ``tokenizer``: a directory or hub id to take the tokenizer files from, for checkpoints saved
    without them. ``check_pairs``: generated question/context pairs added to the bundled ones for
    the int8 / fp16 checks against fp32. ``int8``: ``"static"`` (activation ranges calibrated at
    export, every encoder MatMul and attention in int8, answers independent of batch neighbours),
    ``"static-ffn-fp32"`` (the same with the feed-forward output MatMuls in fp32: closer to fp32's
    answers, slower) or ``"dynamic"`` (scales computed per call, feed-forward output MatMuls in
    fp32). ``calibration``:
    a SQuAD-format JSON file of the user's domain to calibrate static int8 on (default: generated
    pairs bundled with onnxqa); ``calibration_pairs`` of its questions are used, a fixed sample.
    """

    precisions: tuple[str, ...] = ("fp32", "int8")
    force: bool = False
    atol: float = 1e-4  # max |onnx - torch| on start/end logits of the fp32 graph
    tokenizer: str | None = None
    check_pairs: int = 200
    opset: int | None = None
    int8: str = "static"
    calibration: str | None = None
    calibration_pairs: int = 200
    calibration_method: str = "minmax"
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown or not self.precisions:
            raise ExportError(
                f"precisions must be a non-empty subset of {', '.join(PRECISIONS)}, got {self.precisions}"
            )
        if not self.atol > 0:
            raise ExportError(f"atol must be positive, got {self.atol}")
        if isinstance(self.check_pairs, bool) or not isinstance(self.check_pairs, int) or self.check_pairs < 0:
            raise ExportError(f"check_pairs must be an integer >= 0, got {self.check_pairs!r}")
        if self.int8 not in INT8_METHODS:
            raise ExportError(f"int8 must be one of {', '.join(INT8_METHODS)}, got {self.int8!r}")
        if self.calibration_method not in CALIBRATIONS:
            raise ExportError(
                f"calibration_method must be one of {', '.join(CALIBRATIONS)}, got {self.calibration_method!r}"
            )
        n = self.calibration_pairs
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ExportError(f"calibration_pairs must be an integer >= 1, got {n!r}")


def _check_output(out: Path, inputs: list[tuple[str, Path]], force: bool) -> None:
    check_not_overlapping(out, inputs, ExportError)
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory; choose another OUTPUT_DIR")
    if not force:
        raise ExportError(f"{out} already exists; pass --force (force=True) to replace it")
    if not is_model_dir(out):
        raise ExportError(
            f"{out} exists and is not an onnxqa model directory (no readable {MANIFEST}); --force replaces only "
            "those. Choose another OUTPUT_DIR, or remove it yourself if you really mean to"
        )


def export(source: str, output_dir: str | os.PathLike[str], config: ExportConfig | None = None) -> dict[str, Any]:
    """Export ``source`` (hub id or checkpoint directory) to ``output_dir``; return the manifest.

    Raises:
        ExportError: missing export extra; bad source, tokenizer or output (an existing output is
            replaced only with ``force`` and only when it is an onnxqa model directory; never the
            source itself, a directory containing it or one inside it); unsupported or non-QA
            checkpoint; unloadable weights; a failing step.
        ValidationError: the fp32 graph's logits differ from PyTorch's by more than ``atol``.
    """
    config = config or ExportConfig()
    _require_export_extra()
    if "openvino-int8" in config.precisions:
        require_openvino()
    out = Path(output_dir).expanduser()
    src, from_hub = resolve(source)
    tok = resolve(config.tokenizer, "tokenizer")[0] if config.tokenizer else None
    inputs = [("the source checkpoint", src)] + ([("the tokenizer directory", tok)] if tok is not None else [])
    if config.calibration is not None:
        calibration = Path(config.calibration).expanduser()
        if not calibration.is_file():
            raise ExportError(f"calibration file {calibration} not found; pass a SQuAD-format JSON file")
        inputs.append(("the calibration file", calibration))
    _check_output(out, inputs, config.force)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)
    try:
        manifest = _export_into(source, src, from_hub, tok, work, config)
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


def _require_export_extra() -> None:
    try:
        import onnx  # noqa: F401
        import optimum.exporters.onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"export needs the export extra ({exc}); pip install 'onnxqa[export]'") from exc


def _export_into(source: str, src: Path, from_hub: bool, tok: Path | None, work: Path, config: ExportConfig) -> dict:
    """The driver: each step writes into ``work`` and records itself in the manifest."""
    steps = Steps(4 + len(config.precisions), enabled=config.progress)
    with steps.step(f"loading checkpoint {source}"):
        ckpt = load_checkpoint(source, src, from_hub, tok)
        manifest = _new_manifest(ckpt, work)
    with steps.step("exporting the PyTorch graph to ONNX"):
        raw_model, opset = _export_onnx(ckpt, work / "raw", config.opset, manifest)
    with steps.step("optimizing for CPU (fused attention, layer norm, GELU)"):
        fused, written = _optimize(raw_model, manifest, work / FP32_FILE, use_gpu=False)
        steps.note(", ".join(f"{k} {v}" for k, v in fused.items()))
        _check_fusions(ckpt.config.model_type, fused)
    windower = Windower((work / TOKENIZER_FILE).read_text(encoding="utf-8"), manifest["tokenizer"]["cls_token_id"])
    uses_types = manifest["architecture"]["uses_token_type_ids"]
    with steps.step("validating fp32 against PyTorch on the bundled question/context pairs"):
        validation = _validate_fp32(ckpt, work, windower, uses_types, config.atol, steps, _kept_apart(manifest))
    fp32_entry = _variant_entry(work, FP32_FILE, "fp32", opset, written)
    manifest["variants"]["fp32"] = {**fp32_entry, **_kept_apart(manifest), "validation": validation}
    _write_manifest(work, manifest)
    pairs = check_pairs(config.check_pairs)
    feeds = model_inputs(windower, pairs, uses_types)
    fp32_logits: list[np.ndarray] = []

    def check(precision: str, file: str, device: str) -> None:
        if not fp32_logits:
            fp32_logits.extend(onnx_logits(work / FP32_FILE, feeds, **_kept_apart(manifest)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the variant is not validated yet while it is being checked
            kept_apart = manifest["variants"][precision].get("disabled_optimizers", [])
            result = check_variant(work, precision, file, pairs, feeds, fp32_logits, device, kept_apart)
        manifest["variants"][precision]["validation"] = result
        steps.note(
            f"{precision}: answers equal to fp32 on {result['answers_equal']}/{result['pairs']} pairs, mean relative "
            f"logit difference {result['mean_rel_diff']:.3g}: {result['status']}"
            if result["finite"]
            else f"{precision}: non-finite logits: failed"
        )
        if result["status"] == "failed":  # never shipped: its files go, the manifest says why
            entry = manifest["variants"].pop(precision)
            for f in [entry["file"], *(part["file"] for part in entry.get("external_data", []))]:
                (work / f).unlink()
            manifest.setdefault("rejected", {})[precision] = {
                k: v for k, v in entry.items() if k in ("precision", "quantization", "validation")
            }
            _write_manifest(work, manifest)
            warnings.warn(
                f"the {precision} variant failed its check against fp32 ({'; '.join(result['failed_because'])}): "
                f"it was not written; the model directory keeps the variants that passed "
                f"({', '.join(manifest['variants'])}), and its manifest records why under 'rejected'",
                stacklevel=4,
            )

    if "int8" in config.precisions:
        with steps.step(f"quantizing to int8 ({config.int8}) and checking it against fp32"):
            _quantize(work, manifest, opset, config, windower, uses_types)
            check("int8", INT8_FILE, "cpu")
    if "openvino-int8" in config.precisions:
        with steps.step("converting to OpenVINO, quantizing to int8 (NNCF) and checking it against fp32"):
            _openvino_int8(raw_model, work, manifest, config, windower, uses_types)
            check("openvino-int8", OPENVINO_FILE, "cpu")
    if "fp16" in config.precisions:
        with steps.step("optimizing for GPU and converting to fp16 (float32 inputs/outputs)"):
            _to_fp16(raw_model, work, manifest, opset)
            from ..runtime import cuda_available

            if cuda_available():
                check("fp16", FP16_FILE, "cuda")
            else:
                manifest["variants"]["fp16"]["validation"] = _NO_CUDA
                steps.note("fp16 not validated: no CUDA execution provider here")

    if "fp32" not in config.precisions:
        _drop_fp32(work, manifest)
    shutil.rmtree(work / "raw")
    _write_manifest(work, manifest)
    return manifest


def _drop_fp32(work: Path, manifest: dict[str, Any]) -> None:
    """fp32 was not asked for, only the validated base of the others: drop its files, unless no
    other variant passed its check (then it is what the directory has that was checked)."""
    passed = [p for p, v in manifest["variants"].items() if p != "fp32" and v["validation"]["status"] == "passed"]
    if not passed:
        warnings.warn(
            "no requested variant passed its check: the directory keeps the fp32 variant, checked against PyTorch",
            stacklevel=4,
        )
        return
    for f in manifest["variants"]["fp32"].get("external_data", []):
        (work / f["file"]).unlink()
    (work / FP32_FILE).unlink()
    del manifest["variants"]["fp32"]


def _new_manifest(ckpt: Checkpoint, work: Path) -> dict[str, Any]:
    """Write the tokenizer file and start the manifest: source, architecture, tokenizer, versions."""
    import onnx
    import onnxruntime
    import torch
    import transformers

    arch = _architecture(ckpt.config)
    tokenizer = ckpt.tokenizer
    if len(tokenizer) > arch["vocab_size"]:
        raise ExportError(
            f"the tokenizer has {len(tokenizer)} tokens, the model's embedding {arch['vocab_size']}: "
            "they do not belong together"
        )
    (work / TOKENIZER_FILE).write_text(tokenizer.backend_tokenizer.to_str(), encoding="utf-8")
    model_max_length = tokenizer.model_max_length
    if not isinstance(model_max_length, int) or model_max_length > arch["max_positions"]:
        model_max_length = arch["max_positions"]
    return {
        "format": FORMAT_VERSION,
        "task": "extractive-question-answering",
        "source": {"id": ckpt.source_id, "weights_sha256": ckpt.weights_sha256},
        "architecture": arch,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "sha256": sha256_file(work / TOKENIZER_FILE),
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


def _check_fusions(model_type: str, fused: dict[str, int]) -> None:
    """The fusions the family's entry expects must all be there: else the graph was not recognised."""
    family = family_of(model_type)
    missing = [kind for kind in family.fusions if not any(fused.get(op) for op in FUSIONS[kind])]
    if missing:
        raise ExportError(
            f"the optimizer fused no {' or '.join(missing)} in this {family.name} graph ({fused}); graph not recognised"
        )


def _architecture(config: Any) -> dict[str, Any]:
    family = family_of(config.model_type)
    layers, heads, hidden = family.dims(config)
    positions = config.max_position_embeddings
    if family.position_offset:  # positions start after the padding index
        positions -= config.pad_token_id + 1
    return {
        "model_type": config.model_type,
        "num_layers": int(layers),
        "num_heads": int(heads),
        "hidden_size": int(hidden),
        "max_positions": int(positions),
        "vocab_size": int(config.vocab_size),
    }


def _export_onnx(ckpt: Checkpoint, raw: Path, opset: int | None, manifest: dict[str, Any]) -> tuple[Path, int]:
    """optimum's exporter, unoptimized; records whether the graph takes token type ids."""
    import onnx
    from optimum.exporters.onnx import onnx_export_from_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_export_from_model(
            ckpt.model,
            raw,
            task="question-answering",
            opset=opset,
            do_validation=False,
            no_post_process=True,
            preprocessors=[ckpt.tokenizer],
        )
    raw_model = raw / "model.onnx"
    proto = onnx.load(raw_model, load_external_data=False)
    used_opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    manifest["architecture"]["uses_token_type_ids"] = "token_type_ids" in [i.name for i in proto.graph.input]
    return raw_model, used_opset


def _optimized(raw_model: Path, manifest: dict[str, Any], use_gpu: bool) -> Any:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    arch = manifest["architecture"]
    family = family_of(arch["model_type"])
    options = FusionOptions(family.optimizer)
    options.enable_shape_inference = family.shape_inference
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return optimize_model(
            str(raw_model),
            model_type=family.optimizer,
            optimization_options=options,
            num_heads=arch["num_heads"],
            hidden_size=arch["hidden_size"],
            opt_level=0,
            use_gpu=use_gpu,
        )


def _optimize(
    raw_model: Path, manifest: dict[str, Any], out: Path, use_gpu: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """onnxruntime's transformer optimizer (fusions only), then on the CPU graph onnxqa's own
    passes (recorded in the manifest); the operator counts after the optimizer (what it fused) and
    in the file written."""
    opt = _optimized(raw_model, manifest, use_gpu)
    fused = _fused_counts(opt.model)
    if not use_gpu:
        manifest["graph_passes"] = run_passes(opt.model)
    _save_optimized(opt, out)
    return fused, _fused_counts(opt.model)


def _save_optimized(opt: Any, out: Path) -> None:
    """The optimizer's graph (its save adds the com.microsoft opset its fused operators need),
    with external data when it is over 2 GB."""
    opt.save_model_to_file(str(out), use_external_data_format=is_large(opt.model))


def _validate_fp32(
    ckpt: Checkpoint,
    work: Path,
    windower: Windower,
    uses_types: bool,
    atol: float,
    steps: Steps,
    session: dict[str, Any],
) -> dict[str, Any]:
    """fp32 ONNX logits against PyTorch's on every window of the bundled pairs: the manifest's
    validation entry. Raises ValidationError."""
    pairs = validation_pairs()
    feeds, reference = torch_reference(ckpt.model, windower, pairs, uses_types)
    logits = onnx_logits(work / FP32_FILE, feeds, **session)
    if not all(np.isfinite(x).all() for x in logits):
        raise ValidationError("the fp32 ONNX graph produced NaN or infinite logits; nothing was written")
    diff = max(float(np.abs(a - b).max()) for a, b in zip(logits, reference))
    steps.note(f"max |onnx - torch| = {diff:.2e} (tolerance {atol:.0e})")
    if not diff <= atol:
        raise ValidationError(
            f"fp32 ONNX logits differ from PyTorch by {diff:.3e} > {atol:.0e}; "
            "the export is wrong for this checkpoint, nothing was written"
        )
    validation = {
        "status": "passed",
        "reference": "pytorch",
        "pairs": len(pairs),
        "windows": len(feeds),
        "max_abs_diff": diff,
        "atol": atol,
    }
    return validation


def _calibration_set(config: ExportConfig) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The calibration pairs of static int8 and their record for the manifest."""
    n = config.calibration_pairs
    if config.calibration is None:
        return calibration_pairs(n), {"source": "generated (bundled with onnxqa)", "pairs": n}
    import random

    from .._errors import InputError
    from ..squad import load_squad

    path = Path(config.calibration).expanduser()
    try:
        questions = load_squad(path)[1]
    except InputError as exc:
        raise ExportError(f"cannot read the calibration file: {exc}") from exc
    if not questions:
        raise ExportError(f"the calibration file {path} has no questions")
    chosen = sorted(random.Random(0).sample(range(len(questions)), min(n, len(questions))))
    pairs = [(questions[i].question, questions[i].context) for i in chosen]
    return pairs, {"source": path.name, "sha256": sha256_file(path), "pairs": len(pairs)}


def _quantize(
    work: Path, manifest: dict[str, Any], opset: int, config: ExportConfig, windower: Windower, uses_types: bool
) -> None:
    """int8 of the optimized fp32 graph, static (calibrated here) or dynamic."""
    import onnx

    if config.int8 in ("static", "static-ffn-fp32"):
        pairs, record = _calibration_set(config)
        feeds = model_inputs(windower, pairs, uses_types)
        family = family_of(manifest["architecture"]["model_type"])
        ffn = []
        if config.int8 == "static-ffn-fp32":  # nothing GELU-fed left in int8 to smooth
            ffn = gelu_fed_matmuls(onnx.load(work / FP32_FILE, load_external_data=False).graph)
            if not ffn:
                raise ExportError(
                    "--int8 static-ffn-fp32 keeps the MatMuls fed by a GELU in fp32, and this graph has none; "
                    "use --int8 static"
                )
        done = quantize_static_int8(
            work / FP32_FILE,
            work / INT8_FILE,
            feeds,
            calibration=config.calibration_method,
            smooth_alpha=None if ffn else SMOOTH_ALPHA,
            keep_fp32=ffn,
            keep_fragments=family.int8_keep_fp32,
        )
        quantization = {
            "method": "static",
            "recipe": config.int8,
            "format": "QDQ MatMuls, QAttention",
            "weights": "int8, per channel",
            "activations": f"uint8, per tensor, ranges calibrated at export ({config.calibration_method})",
            "calibration": {**record, "windows": len(feeds)},
            "int8": f"{done['attention']} attention QKV projections, {done['matmuls']} MatMuls",
            "smoothed": f"{done['smoothed']} GELU-fed MatMuls (SmoothQuant, alpha {SMOOTH_ALPHA})"
            if done["smoothed"]
            else "none",
            "outlier_channels": _outlier_text(done["outliers"]),
            "kept_fp32": _kept_text(done["kept"]),
        }
    else:
        kept = quantize_dynamic_int8(
            work / FP32_FILE, work / INT8_FILE, family_of(manifest["architecture"]["model_type"]).int8_keep_fp32
        )
        quantization = {
            "method": "dynamic",
            "weights": "int8, per channel",
            "activations": "uint8, per tensor, at run time",
            "kept_fp32": f"{len(kept)} MatMuls: feed-forward outputs (inputs after GELU), products of two activations",
        }
    model = onnx.load(work / INT8_FILE)
    passes = run_passes(model, INT8_PASSES)
    save_onnx(model, work / INT8_FILE)
    quantization["vocabulary"] = (
        "int8, per row, dequantized after the gather" if passes["quantize_vocabulary_tables"] else "fp32"
    )
    if passes["fold_bias_into_int8_matmul"]:
        folded = f"{passes['fold_bias_into_int8_matmul']} MatMuls as MatMulIntegerToFloat with their bias folded in"
        quantization["format"] = "; ".join(filter(None, (quantization.get("format"), folded)))
    entry = _variant_entry(work, INT8_FILE, "int8", opset, _fused_counts(model))
    entry.update(_kept_apart(manifest), quantization=quantization, graph_passes=passes)
    manifest["variants"]["int8"] = entry
    _write_manifest(work, manifest)


def _openvino_int8(
    raw_model: Path, work: Path, manifest: dict[str, Any], config: ExportConfig, windower: Windower, uses_types: bool
) -> None:
    """The OpenVINO int8 variant of the plain ONNX graph, calibrated on the windows that
    calibrate the onnxruntime int8."""
    pairs, record = _calibration_set(config)
    manifest["variants"]["openvino-int8"] = quantize_openvino(
        raw_model, model_inputs(windower, pairs, uses_types), work, record, progress=config.progress
    )
    _write_manifest(work, manifest)


def _outlier_text(outliers: dict[str, int]) -> str:
    channels, matmuls = outliers["channels"], outliers["matmuls"]
    if not channels:
        return "none"
    return f"{channels} input channel{'s' if channels != 1 else ''} of {matmuls} GELU-fed MatMuls in fp32, beside int8"


def _kept_text(kept: dict[str, int]) -> str:
    what = {
        "head": "QA output head",
        "activations": "products of two activations",
        "family": "kept by the family",
        "given": "feed-forward output",
        "outliers": "outlier-channel",
    }
    return ", ".join(f"{n} {what[k]} MatMul{'s' if n != 1 else ''}" for k, n in kept.items() if n) or "none"


def _to_fp16(raw_model: Path, work: Path, manifest: dict[str, Any], opset: int) -> None:
    gpu = _optimized(raw_model, manifest, use_gpu=True)
    gpu.convert_float_to_float16(keep_io_types=True)
    _save_optimized(gpu, work / FP16_FILE)
    manifest["variants"]["fp16"] = _variant_entry(work, FP16_FILE, "fp16", opset, _fused_counts(gpu.model))
    _write_manifest(work, manifest)


def _kept_apart(manifest: dict[str, Any]) -> dict[str, Any]:
    """What a CPU variant's manifest entry says about its session: the onnxruntime optimizers it
    must run without, so that they do not fuse back what onnxqa's passes took apart."""
    disabled = disabled_optimizers(manifest.get("graph_passes", {}))
    return {"disabled_optimizers": disabled} if disabled else {}


def _write_manifest(work: Path, manifest: dict[str, Any]) -> None:
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _variant_entry(work: Path, file: str, precision: str, opset: int, fused: dict[str, int]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file": file,
        "precision": precision,
        "sha256": sha256_file(work / file),
        "bytes": (work / file).stat().st_size,
        "opset": opset,
        "fused_ops": fused,
    }
    data = data_file(work / file)
    if data.exists():  # a graph over 2 GB: its tensors in one file beside it, hashed like the graph
        entry["external_data"] = [{"file": data.name, "sha256": sha256_file(data), "bytes": data.stat().st_size}]
    return entry


def _fused_counts(onnx_model: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx_model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {op: counts[op] for op in _COUNTED if op in counts}


def quantize_int8(fp32: Path, out: Path) -> list[str]:
    """The dynamic variant (kept for callers of the earlier name): see ``quantize_dynamic_int8``."""
    return quantize_dynamic_int8(fp32, out)
