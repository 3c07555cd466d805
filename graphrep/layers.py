"""The package's layers, read from its source: which part of graphrep imports which.

:func:`import_graph` parses every module under ``graphrep/`` with :mod:`ast` (nothing is
imported or run) and returns a :class:`networkx.DiGraph` whose nodes are graphrep's
parts (its subpackages and top-level modules: ``ann``, ``sim``, ``protocol``, ...) and
whose edge ``a -> b`` says that some module of ``a`` imports something of ``b`` (at any
depth: a function-local import is a dependency too; relative imports are resolved).
Edge attribute ``imports`` counts the import statements. :func:`draw` lays the graph out
in layers (a part above everything it imports) and writes the picture the README shows::

    python -m graphrep.layers docs/layers.png

The rules themselves (the simulator and the index know nothing of replication, and so
on) are checked by the test suite on the same graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx

__all__ = ["PACKAGE", "draw", "import_graph", "imported", "part_of"]

PACKAGE = Path(__file__).resolve().parent
"""The ``graphrep`` package directory whose sources are read."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """Every graphrep name the module at ``path`` imports, with its line: ``from a import
    b`` counts as ``a.b`` (b may be a module), relative imports resolved against ``path``."""
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
    return sorted((line, name) for line, name in found
                  if name == "graphrep" or name.startswith("graphrep."))


def part_of(name: str) -> str | None:
    """The part of graphrep a dotted name belongs to (``graphrep.sim.engine`` -> ``sim``),
    or None for the bare package."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "graphrep" else None


def import_graph(package: Path = PACKAGE) -> nx.DiGraph:
    """The parts of graphrep and who imports whom (see the module docstring). Nodes and
    edges are added in sorted order, so the graph (and its drawing) is the same in every
    process."""
    g = nx.DiGraph()
    sources = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    for path in sources:
        me = part_of(_module_name(path))
        if me is None or me.startswith("_") or me == "layers":  # this tool draws, not runs
            continue
        g.add_node(me.removesuffix(".py"))
    for path in sources:
        me = part_of(_module_name(path))
        if me not in g:
            continue
        for _, name in imported(path):
            other = part_of(name)
            if other is None or other == me or other not in g:
                continue
            count = g.get_edge_data(me, other, {"imports": 0})["imports"]
            g.add_edge(me, other, imports=count + 1)
    return g


def draw(path: str | Path, graph: nx.DiGraph | None = None) -> None:
    """Write a picture of the import graph to ``path``: each part one layer above the
    deepest part it imports, ``sansio`` and ``errors`` at the bottom; an edge implied by
    two others (its transitive reduction) is not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = import_graph() if graph is None else graph
    cond = nx.condensation(g)  # cycles (there should be none) drawn as one layer
    level: dict[str, int] = {}
    for c in reversed(list(nx.topological_sort(cond))):
        depth = 1 + max((level[next(iter(cond.nodes[d]["members"]))]
                         for d in cond.successors(c)), default=-1)
        for member in cond.nodes[c]["members"]:
            level[member] = depth
    rows: dict[int, list[str]] = {}
    for node in sorted(g):
        rows.setdefault(level[node], []).append(node)
    pos = {node: (i - (len(row) - 1) / 2, depth)
           for depth, row in rows.items() for i, node in enumerate(row)}
    shown = nx.transitive_reduction(g) if nx.is_directed_acyclic_graph(g) else g
    fig, ax = plt.subplots(figsize=(8, 1.3 * (len(rows) + 1)))
    nx.draw_networkx_edges(shown, pos, ax=ax, edge_color="#888888", arrows=True,
                           arrowsize=12, node_size=2600, connectionstyle="arc3,rad=0.08")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_size=2600, node_color="#dbe8f5",
                           edgecolors="#3b6ea5")
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=9)
    ax.set_title("graphrep: a -> b means a imports b (arrows that follow from others are left "
                 "out)", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/layers.png"
    draw(out)
    print(f"wrote {out}")
