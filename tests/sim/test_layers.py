"""The packages depend on each other in one direction only, checked on the source.

``graphrep.sim`` is a library: it imports nothing of graphrep but the process interface
(``graphrep.sansio``), the errors and the plot style (``graphrep.plotstyle``, which
imports nothing of graphrep). The index (``graphrep.ann``) knows nothing of
replication, simulation, the cluster scenario, the specification or the workload data;
the protocol knows no simulator, scenario or network runtime; the cluster scenario no
network runtime, and the network runtime (``graphrep.net``) no simulator, scenario or
specification: the simulated and the live driver share only the protocol. Every
``import`` and ``from ... import`` of each module counts, at any depth (a
function-local import is a dependency too), relative ones resolved
(:func:`graphrep.layers.imported`); a violation is reported with its file and line.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from graphrep import layers
from graphrep.layers import PACKAGE, imported

ONLY = {"sim": ("graphrep.sansio", "graphrep.errors", "graphrep.sim", "graphrep.plotstyle")}
"""Packages that may import nothing of graphrep but these (and their submodules)."""

NEVER = {
    "ann": ("graphrep.protocol", "graphrep.sim", "graphrep.cluster", "graphrep.spec",
            "graphrep.datasets", "graphrep.net"),
    "protocol": ("graphrep.sim", "graphrep.cluster", "graphrep.net"),
    "cluster": ("graphrep.net",),
    "net": ("graphrep.sim", "graphrep.cluster", "graphrep.spec"),
}
"""Packages that must not import these (or their submodules)."""


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _violations(package: str, wrong: Callable[[str], bool]) -> list[str]:
    """``file:line imports name`` for every import of a ``package`` module that is
    ``wrong``."""
    sources = sorted((PACKAGE / package).rglob("*.py"))
    assert sources, f"no sources under graphrep/{package}"
    return [f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
            for path in sources for line, name in imported(path) if wrong(name)]


@pytest.mark.parametrize("package", sorted(ONLY))
def test_a_library_package_imports_only_what_it_may(package: str):
    bad = _violations(package, lambda name: not _within(name, ONLY[package]))
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("package", sorted(NEVER))
def test_no_package_imports_a_layer_above_it(package: str):
    bad = _violations(package, lambda name: _within(name, NEVER[package]))
    assert bad == [], "\n".join(bad)


def test_the_walk_sees_every_spelling_of_an_import(tmp_path, monkeypatch):
    """graphrep.layers.imported, which the rules above read every module with."""
    pkg = tmp_path / "graphrep" / "sim" / "deep"
    pkg.mkdir(parents=True)
    module = pkg / "mod.py"
    module.write_text("import numpy\nimport graphrep.cluster\nfrom graphrep import spec\n"
                      "from .. import engine\nfrom ...protocol import replica\n"
                      "def f():\n    from graphrep.ann.index import VamanaIndex\n")
    monkeypatch.setattr(layers, "PACKAGE", tmp_path / "graphrep")
    assert [name for _, name in imported(module)] == [
        "graphrep.cluster", "graphrep.spec", "graphrep.sim.engine",
        "graphrep.protocol.replica", "graphrep.ann.index.VamanaIndex"]
