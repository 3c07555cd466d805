"""The packages depend on each other in one direction only, checked on the source.

``graphrep.sim`` is a library: it imports nothing of graphrep but the process interface
(``graphrep.sansio``) and the errors. The index (``graphrep.ann``) knows nothing of
replication, simulation, the cluster scenario, the specification or the workload data;
the protocol knows no simulator, scenario or network runtime; the cluster scenario no
network runtime. Every ``import`` and ``from ... import`` of each module counts, at any
depth (a function-local import is a dependency too), relative ones resolved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "graphrep"

ONLY = {"sim": ("graphrep.sansio", "graphrep.errors", "graphrep.sim")}
"""Packages that may import nothing of graphrep but these (and their submodules)."""

NEVER = {
    "ann": ("graphrep.protocol", "graphrep.sim", "graphrep.cluster", "graphrep.spec",
            "graphrep.datasets"),
    "protocol": ("graphrep.sim", "graphrep.cluster", "graphrep.net"),
    "cluster": ("graphrep.net",),
}
"""Packages that must not import these (or their submodules)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """Every graphrep module ``path`` imports, with its line: ``from a import b`` counts
    as ``a.b`` (b may be a module), relative imports resolved against ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return [(line, name) for line, name in found
            if name == "graphrep" or name.startswith("graphrep.")]


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _sources(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ONLY))
def test_a_library_package_imports_only_what_it_may(package: str):
    allowed = ONLY[package]
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
           for path in _sources(package) for line, name in imported(path)
           if not _within(name, allowed)]
    assert _sources(package) and bad == [], "\n".join(bad)


@pytest.mark.parametrize("package", sorted(NEVER))
def test_no_package_imports_a_layer_above_it(package: str):
    bad = [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
           for path in _sources(package) for line, name in imported(path)
           if _within(name, NEVER[package])]
    assert _sources(package) and bad == [], "\n".join(bad)


def test_the_walk_sees_every_spelling_of_an_import(tmp_path, monkeypatch):
    pkg = tmp_path / "graphrep" / "sim" / "deep"
    pkg.mkdir(parents=True)
    module = pkg / "mod.py"
    module.write_text("import numpy\nimport graphrep.cluster\nfrom graphrep import spec\n"
                      "from .. import engine\nfrom ...protocol import replica\n"
                      "def f():\n    from graphrep.ann.index import VamanaIndex\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "graphrep")
    assert [name for _, name in imported(module)] == [
        "graphrep.cluster", "graphrep.spec", "graphrep.sim.engine",
        "graphrep.protocol.replica", "graphrep.ann.index.VamanaIndex"]
