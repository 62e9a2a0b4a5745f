"""The shape of the package, read from its source with ``ast``: no import cycles, no private name
taken across packages, no long functions, and ``onnxqa.ray``'s Ray Data side free of Ray Serve.

Imports count wherever they are written (module level or inside a function), except under
``if TYPE_CHECKING:``, which never runs. An import of ``a.b.c`` is an edge to that module (``c.py``,
or ``c/__init__.py`` for a package), not to its parent packages.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = "onnxqa"
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Module:
    name: str  # dotted: onnxqa.runtime._answer; a package is named after its __init__'s folder
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        """The package the module belongs to (a package's __init__ belongs to the package itself)."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    importer: Module
    target: str  # the module imported
    names: tuple[str, ...]  # the names taken from it (empty for ``import x``)
    line: int

    def where(self) -> str:
        path = self.importer.path
        return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{self.line}"


def modules() -> dict[str, Module]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:``."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def imports(module: Module, known: dict[str, Module]) -> Iterator[Import]:
    """Every import of an ``onnxqa`` module in ``module``, resolved to the module it loads."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield Import(module, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            taken = []
            for alias in node.names:
                if f"{source}.{alias.name}" in known:  # ``from . import x`` of a module: an import of x
                    yield Import(module, f"{source}.{alias.name}", (), node.lineno)
                else:
                    taken.append(alias.name)
            if taken:
                yield Import(module, source, tuple(taken), node.lineno)


def import_graph() -> tuple[dict[str, Module], list[Import]]:
    known = modules()
    return known, [imp for module in known.values() for imp in imports(module, known)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or with a self-import (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _owner_ok(owner: str, package: str) -> bool:
    """A package's private parts may be used by the package itself and by the packages inside it."""
    return package == owner or package.startswith(owner + ".")


def private_crossings(known: dict[str, Module], found: list[Import]) -> list[str]:
    """Imports of another package's private module, or of a ``_name`` from another package's module.

    A private module (a dotted component starting with ``_``) belongs to the package that holds it:
    that package and its subpackages may import it (``onnxqa.ray._data`` may import ``onnxqa._rows``),
    sibling and parent packages may not (``onnxqa.batch`` may not import ``onnxqa.runtime._answer``).
    A ``_name`` may only be taken from a module of the importer's own package.
    """
    bad = []
    for imp in found:
        package = imp.importer.package
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            if part.startswith("_") and not part.startswith("__"):
                owner = ".".join(parts[:i])
                if not _owner_ok(owner, package):
                    bad.append(f"{imp.where()}: {imp.importer.name} imports {imp.target}, private to {owner}")
                break
        private_names = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        target = known.get(imp.target)
        if private_names and target is not None and target.package != package:
            bad.append(f"{imp.where()}: {imp.importer.name} takes {', '.join(private_names)} from {imp.target}")
    return bad


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions of ``src`` longer than ``limit`` lines, from ``def`` to their last line."""
    found = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} has {lines} lines")
    return found


# ---------------------------------------------------------------- the checks of the checks


def _graph_of(sources: dict[str, str], tmp_path: Path) -> tuple[dict[str, Module], list[Import]]:
    known = {}
    for name, text in sources.items():
        path = tmp_path / f"{name.replace('.', '_')}.py"
        path.write_text(text)
        is_package = name.endswith("__init__")
        dotted = name.removesuffix(".__init__")
        known[dotted] = Module(dotted, path, is_package)
    return known, [imp for m in known.values() for imp in imports(m, known)]


def test_the_checks_find_what_they_look_for(tmp_path):
    known, found = _graph_of(
        {
            "onnxqa.__init__": "from .runtime import load\n",
            "onnxqa.batch": "def f():\n    from .runtime._answer import QAOptions\n",
            "onnxqa.runtime.__init__": "from ._answer import load\nfrom .._errors import InputError\n",
            "onnxqa.runtime._answer": "from .. import batch\nfrom ..batch import _plain\n",
            "onnxqa._errors": "",
            "onnxqa.runtime._session": "",
            "onnxqa.ray._data": "from .._rows import answer_columns\nfrom ..runtime import _session\n",
            "onnxqa._rows": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .batch import x\n",
        },
        tmp_path,
    )
    targets = {(imp.importer.name, imp.target) for imp in found}
    assert ("onnxqa.runtime._answer", "onnxqa.batch") in targets  # ``from .. import batch``: the module
    assert ("onnxqa.batch", "onnxqa.runtime._answer") in targets  # inside a function
    assert ("onnxqa.runtime", "onnxqa._errors") in targets
    assert not any(importer == "onnxqa._rows" for importer, _ in targets)  # TYPE_CHECKING only
    edges: dict[str, set[str]] = {}
    for imp in found:
        edges.setdefault(imp.importer.name, set()).add(imp.target)
    assert cycles(edges) == [["onnxqa.batch", "onnxqa.runtime._answer"]]
    crossings = private_crossings(known, found)
    assert len(crossings) == 3, crossings
    assert any("onnxqa.batch imports onnxqa.runtime._answer" in c for c in crossings)
    assert any("takes _plain from onnxqa.batch" in c for c in crossings)
    assert any("onnxqa.ray._data imports onnxqa.runtime._session" in c for c in crossings)


# ---------------------------------------------------------------- the package


def test_no_import_cycles():
    _, found = import_graph()
    edges: dict[str, set[str]] = {}
    for imp in found:
        edges.setdefault(imp.importer.name, set()).add(imp.target)
    assert cycles(edges) == []


def test_no_private_name_taken_across_packages():
    known, found = import_graph()
    assert private_crossings(known, found) == []


def test_no_function_over_80_lines():
    assert long_functions() == []


RAY_DATA_ONLY = r"""
import json, sys
import onnxqa.ray
onnxqa.ray.QAPredictor
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette", "uvicorn") or m == "ray.serve")
print(json.dumps(heavy))
"""


def test_ray_data_predictor_imports_no_serving_stack():
    """``onnxqa.ray.QAPredictor`` (Ray Data) loads neither Ray Serve nor FastAPI."""
    import pytest

    pytest.importorskip("ray")
    out = subprocess.run([sys.executable, "-c", RAY_DATA_ONLY], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
