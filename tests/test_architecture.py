"""The package's shape: workflow subpackages, one-way imports, cheap imports, old paths kept.

These are the rules of docs/architecture.md, checked on the source itself so a change that
breaks one fails here with the module named (lint-imports checks the same layers in CI).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import napari_nucleus_ai

PKG = Path(napari_nucleus_ai.__file__).parent
ROOT = PKG.parents[1]
NAME = "napari_nucleus_ai"

#: The layers, outermost first (the contract in pyproject.toml says the same).
LAYERS = [
    {"cli"},
    {"demo"},
    {"widgets"},
    {"batch", "review", "infection"},
    {"classify", "datasets"},
    {"models", "segment", "samples"},
    {"io"},
    {"localizations", "images"},
    {"cells"},
    {"core"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """Every module of the package that ``name`` imports, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + is_pkg]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in modules and "." in t:
                t = t.rsplit(".", 1)[0]
            # a module's own parent packages are imported with it: not a dependency
            if t in modules and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_no_loose_modules_at_the_package_top():
    loose = sorted(p.name for p in PKG.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cells.py"]
    # data files live beside the module that reads them (napari.yaml: the npe2 manifest link)
    files = sorted(p.name for p in PKG.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc"))
    assert files == ["napari.yaml"]


def test_every_subpackage_is_a_package():
    missing = [
        str(d.relative_to(PKG))
        for d in PKG.rglob("*")
        if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py"))
        if not (d / "__init__.py").exists()
    ]
    assert missing == []


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def _layer_of(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def test_imports_go_down_the_layers_only():
    wrong = []
    for importer, targets in _graph().items():
        a = _layer_of(importer)
        for t in targets:
            b = _layer_of(t)
            if a is None or b is None:
                continue
            sideways = a == b and importer.split(".")[1] != t.split(".")[1]
            if b < a or sideways:
                wrong.append(f"{importer} -> {t}")
    assert wrong == []


def test_layers_match_the_import_linter_contract():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = config["contracts"][0]["layers"]
    assert [{n.strip() for n in layer.split("|")} for layer in layers] == LAYERS


LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which(
    "lint-imports"
)


@pytest.mark.skipif(LINT_IMPORTS is None, reason="import-linter not installed")
def test_lint_imports_passes():
    out = subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-2000:]


CHEAP = [
    "napari_nucleus_ai",
    "napari_nucleus_ai.core",
    "napari_nucleus_ai.core.errors",
    "napari_nucleus_ai.core.progress",
    "napari_nucleus_ai.core.files",
    "napari_nucleus_ai.core.settings",
    "napari_nucleus_ai.core.device",
    "napari_nucleus_ai.core.units",
    "napari_nucleus_ai.core.palette",
    "napari_nucleus_ai.cells",
    "napari_nucleus_ai.localizations",
    "napari_nucleus_ai.images",
    "napari_nucleus_ai.io",
    "napari_nucleus_ai.io.napari_io",
    "napari_nucleus_ai.models.card",
    "napari_nucleus_ai.models.package",
    "napari_nucleus_ai.models.framing",
    "napari_nucleus_ai.classify",
    "napari_nucleus_ai.review",
    "napari_nucleus_ai.review.store",
    "napari_nucleus_ai.cli",
]


def test_core_imports_no_qt_napari_or_torch():
    code = (
        "import sys\n"
        f"for m in {CHEAP!r}:\n"
        "    __import__(m)\n"
        "heavy = ('torch', 'napari', 'qtpy', 'PyQt6', 'PySide6', 'vispy')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_old_module_paths_are_the_same_modules():
    import warnings

    from napari_nucleus_ai.review.store import AnnotationStore

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from napari_nucleus_ai.annotations import AnnotationStore as Old
        from napari_nucleus_ai.io.localizations import table as old_table
    from napari_nucleus_ai.localizations import table

    assert Old is AnnotationStore
    assert old_table is table and table.__name__ == f"{NAME}.localizations.table"
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    for old, new in napari_nucleus_ai.MOVED.items():
        assert (PKG / new.replace(".", "/")).with_suffix(".py").exists() or (
            PKG / new.replace(".", "/") / "__init__.py"
        ).exists(), f"{old} -> {new}: no such module"


def test_old_subpackage_names_export_their_former_functions():
    from napari_nucleus_ai import classify, infection, review

    assert callable(classify.classify_cells) and callable(classify.train)
    assert callable(review.differential_counts) and review.ReviewQueue
    assert callable(infection.analyse_timelapse)
    for pkg in (classify, review, infection):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None
