"""The sans-IO process interface, as the simulator's users know it.

It lives in :mod:`graphrep.sansio` so that the protocol, which must not import the
simulator, and the live runtime share it; this module re-exports it unchanged.
"""

from graphrep.sansio import (
    BaseProcess,
    CancelTimer,
    DurableWrite,
    Effect,
    Effects,
    Log,
    Metric,
    Process,
    ProcessFactory,
    Send,
    SetTimer,
    Sync,
)

__all__ = [
    "BaseProcess",
    "CancelTimer",
    "DurableWrite",
    "Effect",
    "Effects",
    "Log",
    "Metric",
    "Process",
    "ProcessFactory",
    "Send",
    "SetTimer",
    "Sync",
]
