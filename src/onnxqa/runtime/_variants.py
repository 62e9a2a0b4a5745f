"""Which variant of a model directory to load on a device."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from .._errors import InputError, ModelLoadError, ProviderError
from .._manifest import BACKENDS, PRECISIONS, read_manifest, variant_status
from ._openvino import openvino_available

__all__ = ["AUTO_PRECISION", "SUITED_PRECISIONS", "pick_precision", "suited_precisions"]

# precision="auto" picks the first of these that passed its check at export (see pick_precision)
AUTO_PRECISION = {"cpu": ("int8", "fp32", "openvino-int8"), "cuda": ("fp16", "fp32")}
SUITED_PRECISIONS = {"cpu": ("fp32", "int8", "openvino-int8"), "cuda": ("fp32", "fp16")}
"""The precisions that run on each device, fp32 first (``openvino-int8``: on OpenVINO, an extra)."""
_warned: set[tuple[str, str]] = set()  # (model directory, precision) already warned about


def pick_precision(
    model_dir: Path, variants: dict[str, Any], device: str, precision: str, rejected: dict[str, Any] | None = None
) -> str:
    """The variant to load: an explicit ``precision``, or for ``"auto"`` the first of the device's
    candidates that passed its check at export; an unvalidated one only when none passed, a failed
    one never while another exists (exports since format 1's ``rejected`` record write no failed
    variant at all). Choosing a variant that did not pass warns once."""
    if precision == "auto":
        present = [p for p in AUTO_PRECISION[device] if p in variants and _installed(p)]
        if not present:
            raise ModelLoadError(
                f"the model directory has no variant that runs on {device} (has: {', '.join(variants)}); "
                f"re-export with --precision {','.join(SUITED_PRECISIONS[device])}"
            )
        rank = {"passed": 0, "unvalidated": 1, "failed": 2}
        chosen = min(present, key=lambda p: rank[variant_status(variants[p])])
    elif precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    elif precision not in SUITED_PRECISIONS[device]:
        other = "cuda" if device == "cpu" else "cpu"
        raise ProviderError(
            f"precision {precision!r} is not suited to device {device!r} (it is built for {other}); "
            f"on {device} use {' or '.join(SUITED_PRECISIONS[device])}"
        )
    elif precision not in variants and isinstance((rejected or {}).get(precision), dict):
        why = rejected[precision].get("validation", {})  # type: ignore[index]
        reasons = "; ".join(why.get("failed_because", [])) if isinstance(why, dict) else ""
        raise ModelLoadError(
            f"the {precision} variant of {model_dir} failed its check against fp32 at export"
            + (f" ({reasons})" if reasons else "")
            + f" and was not written (has: {', '.join(variants)}); "
            + (
                "re-export with --calibration FILE of your domain or --int8 dynamic, or use fp32"
                if precision == "int8"
                else "use fp32, or re-export on another machine and check it there"
            )
        )
    elif precision not in variants:
        raise ModelLoadError(
            f"the model directory has no {precision} variant (has: {', '.join(variants)}); "
            f"re-export with --precision including {precision}"
        )
    else:
        chosen = precision
    status = variant_status(variants[chosen])
    key = (str(model_dir.resolve()), chosen)
    if status != "passed" and key not in _warned:
        _warned.add(key)
        why = variants[chosen].get("validation", {})
        detail = "; ".join(why.get("failed_because", [])) or why.get("reason", "") if isinstance(why, dict) else ""
        warnings.warn(
            f"using the {chosen} variant of {model_dir}, which {'failed' if status == 'failed' else 'did not get'} "
            f"its check against {'fp32' if chosen != 'fp32' else 'PyTorch'} at export"
            + (f" ({detail})" if detail else "")
            + "; its answers may differ: measure with `onnxqa eval`",
            UserWarning,
            stacklevel=4,
        )
    return chosen


def _installed(precision: str) -> bool:
    """Whether the backend of a variant is installed (onnxruntime always is)."""
    return BACKENDS.get(precision) != "openvino" or openvino_available()


def suited_precisions(model_dir: str | os.PathLike[str], device: str = "auto") -> list[str]:
    """The precisions of ``model_dir`` that run on ``device`` (``"auto"`` resolved), fp32 first;
    ``openvino-int8`` only where the ``openvino`` extra is installed.

    Raises:
        ModelLoadError: the directory is not a model directory, or has no variant for the device.
        ProviderError: the device is unknown or unavailable.
    """
    from ._session import resolve_device

    device = resolve_device(device)
    variants = read_manifest(Path(model_dir))["variants"]
    present = [p for p in SUITED_PRECISIONS[device] if p in variants and _installed(p)]
    if not present:
        raise ModelLoadError(
            f"{model_dir} has no variant that runs on {device} (has: {', '.join(variants)}); "
            f"re-export with --precision {','.join(SUITED_PRECISIONS[device])}"
        )
    return present
