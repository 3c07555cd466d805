"""The live runtime: the protocol's replicas over TCP with trio, on a durable store.

The same ``ShardHost`` / ``Replica`` objects the simulator drives, run by one serial
loop per node (:mod:`.driver`), with length-prefixed frames and a versioned hello
(:mod:`.wire`), a link per peer (:mod:`.peers`), an SQLite store with group commit
(:mod:`.store`), node processes described by one TOML file (:mod:`.config`,
:mod:`.node`), and a client (:mod:`.client`). :mod:`.testing` holds test aids.

This package imports ``graphrep.sansio``, ``graphrep.protocol``, ``graphrep.ann`` and
``graphrep.errors``; never ``graphrep.sim`` or ``graphrep.cluster``.
"""

from graphrep.net.client import READ_PREFERENCES, Ack, Client, SyncClient
from graphrep.net.config import ClusterFile, NodeSpec
from graphrep.net.driver import DriverConfig, NodeDriver
from graphrep.net.node import build_node, status_of
from graphrep.net.store import SQLiteStore
from graphrep.net.transport import TCPTransport

__all__ = [
    "READ_PREFERENCES",
    "Ack",
    "Client",
    "ClusterFile",
    "DriverConfig",
    "NodeDriver",
    "NodeSpec",
    "SQLiteStore",
    "SyncClient",
    "TCPTransport",
    "build_node",
    "status_of",
]
