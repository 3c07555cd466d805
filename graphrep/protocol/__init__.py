"""The replication protocol: the replicas of one shard as sans-IO state machines.

The names below are importable from this package (loaded on first use, so importing
one light module such as :mod:`.messages` does not load the index).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphrep.protocol.config import (
        CANDIDATE,
        CONCERNS,
        FOLLOWER,
        LEADER,
        POLICIES,
        SYNC_POLICIES,
        Concern,
        Policy,
        ReplicaConfig,
        SyncPolicy,
    )
    from graphrep.protocol.hooks import ReplicaHooks

_WHERE = {
    "config": ("CANDIDATE", "CONCERNS", "FOLLOWER", "LEADER", "POLICIES", "SYNC_POLICIES",
               "Concern", "Policy", "ReplicaConfig", "SyncPolicy"),
    "hooks": ("ReplicaHooks",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "CANDIDATE",
    "CONCERNS",
    "FOLLOWER",
    "LEADER",
    "POLICIES",
    "SYNC_POLICIES",
    "Concern",
    "Policy",
    "ReplicaConfig",
    "ReplicaHooks",
    "SyncPolicy",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
