"""Test aids for driving replicas by hand."""

from __future__ import annotations

from graphrep.sansio import DurableWrite


def store(disk: dict, effects: list) -> None:
    """Carry out the ``DurableWrite`` effects in ``effects`` on ``disk`` (a value of None
    erases the key), as a driver does once they are synced."""
    for e in effects:
        if type(e) is DurableWrite:
            if e.value is None:
                disk.pop(e.key, None)
            else:
                disk[e.key] = e.value
