"""graphrep.layers reads the import graph from the source and draws it."""

from __future__ import annotations

import networkx as nx

from graphrep.layers import draw, import_graph


def test_the_import_graph_names_the_parts_and_has_no_cycle():
    g = import_graph()
    assert {"ann", "sim", "protocol", "cluster", "spec", "sansio", "errors"} <= set(g)
    assert nx.is_directed_acyclic_graph(g)
    # the simulator draws with the one plot style, which imports nothing of graphrep
    assert set(g.successors("sim")) <= {"sansio", "errors", "plotstyle"}
    assert not set(g.successors("plotstyle"))
    assert "sim" not in set(g.successors("protocol")) | set(g.successors("ann"))
    assert g.edges["cluster", "protocol"]["imports"] >= 1


def test_a_cycle_would_show(tmp_path):
    g = import_graph()
    g.add_edge("sansio", "cluster", imports=1)  # what a layering mistake looks like
    assert not nx.is_directed_acyclic_graph(g)
    draw(tmp_path / "cycle.png", g)  # still drawn, as one layer
    assert (tmp_path / "cycle.png").stat().st_size > 0


def test_the_picture_is_written(tmp_path):
    out = tmp_path / "layers.png"
    draw(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
