"""The page at ``GET /``: one self-contained HTML file (no CDN, no build step), configured per server."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["render_page"]

_MARK = "/*ONNXQA_CONFIG*/null"


@lru_cache(maxsize=1)
def _template() -> str:
    return resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")


def render_page(config: dict[str, Any]) -> str:
    """The page with the server's facts (model, precision, device, whether keys are needed)."""
    # "</" never appears in the JSON, so it cannot close the script element it sits in
    data = json.dumps(config).replace("</", "<\\/")
    return _template().replace(_MARK, data)
