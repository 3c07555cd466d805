"""The index: a Numba-compiled Vamana (DiskANN) graph that emits and applies edge deltas.

``ann`` knows nothing of replication: it mutates a graph, says exactly which
node records each mutation changed (:class:`EdgeDelta`), and applies such
records from another index without recomputing anything.
"""

from graphrep.ann.codes import CodeBook
from graphrep.ann.delta import EdgeDelta, NodeRecord
from graphrep.ann.index import VamanaIndex

__all__ = ["CodeBook", "EdgeDelta", "NodeRecord", "VamanaIndex"]
