"""A griffe extension for the API reference: the docstrings' reST roles as Markdown code.

The docstrings write cross-references the Sphinx way (``:class:`~onnxqa.OverloadedError```,
``:meth:`batch```) and end a paragraph with ``::`` before a literal block. Markdown would show
both as typed: this turns a role into a code span of its target (the last part with ``~``) and
``::`` into ``:`` (the indented block after it is a code block in Markdown already). Docstrings
stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(~?)([^`]+)`")
LITERAL = re.compile(r"(?<=\S)::$", re.MULTILINE)


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = LITERAL.sub(":", ROLE.sub(_code, obj.docstring.value))
