"""The package layering of docs/architecture.md, checked on the imports of every module in src/pgt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pgt

ROOT = Path(pgt.__file__).parent
# Each area and the areas it may import (besides itself and the bottom modules).
BOTTOM = {"errors", "io", "records", "options", "settings", "lazy", "corpus"}
ALLOWED = {
    "corpus": {"errors", "io", "records", "options", "settings", "lazy"},
    "substrate": BOTTOM,
    "model": BOTTOM | {"substrate"},
    "data": BOTTOM | {"substrate"},
    "growth": BOTTOM | {"substrate", "model", "data"},
    "compose": BOTTOM | {"substrate", "model", "data", "growth"},
    "eval": BOTTOM | {"substrate", "model", "data", "growth", "compose"},
    "study": BOTTOM | {"substrate", "model", "data", "growth", "compose", "eval"},
    "demo": BOTTOM | {"substrate", "model", "data", "growth", "compose", "eval"},
}

# Known upward edges, to be removed (none left).
KNOWN_UPWARD: dict[str, set[str]] = {}


def _area(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0].removesuffix(".py")


def _imported_areas(path: Path) -> set[str]:
    """pgt areas named by every import in the file (top level, inside functions and TYPE_CHECKING)."""
    areas = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "pgt":  # from pgt import options
                names += [f"pgt.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            is_module = len(parts) > 1 and ((ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").exists())
            if parts[0] == "pgt" and is_module:
                areas.add(parts[1])
    return areas


MODULES = sorted(path for path in ROOT.rglob("*.py") if _area(path) in ALLOWED)


def test_every_area_is_placed() -> None:
    areas = {_area(path) for path in ROOT.rglob("*.py")}
    assert areas - set(ALLOWED) - BOTTOM <= {"cli", "__init__", "__main__"}


@pytest.mark.parametrize("path", MODULES, ids=[str(path.relative_to(ROOT)) for path in MODULES])
def test_module_imports_only_lower_layers(path: Path) -> None:
    area = _area(path)
    upward = _imported_areas(path) - ALLOWED[area] - {area} - KNOWN_UPWARD.get(str(path.relative_to(ROOT)), set())
    assert not upward, f"{path.relative_to(ROOT)} ({area}) imports {sorted(upward)}"


def _module_name(path: Path) -> str:
    parts = ["pgt", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """pgt modules (not packages) named by every import in the file, wherever it stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in known}


def test_no_import_cycles_between_modules() -> None:
    """A cycle hides in imports inside functions; packages' __init__ (lazy re-exports) are not counted."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py") if p.name != "__init__.py"}
    graph = {name: _imported_modules(path, set(files)) - {name} for name, path in files.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name) :] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for child in sorted(graph[name]):
            visit(child, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
