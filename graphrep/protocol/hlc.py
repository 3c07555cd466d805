"""Hybrid logical clocks: timestamps that follow physical time, respect causality, and
are unique across regions.

A timestamp is one int64, ``(ms << 22) | (logical << 8) | region``: 41 bits of physical
milliseconds (the node's own clock, which may be skewed), a 14-bit logical counter for
events within one millisecond or behind a clock that is late, and the region's index as
the final tie-break, so two regions never produce the same timestamp. Comparing the ints
compares (ms, logical, region).

The clock never runs backwards: :meth:`HLC.tick` returns a timestamp above every one this
clock returned or :meth:`HLC.observe` d. So an event that has seen another (a write
applied after a remote entry merged) has a larger timestamp: last-writer-wins by
timestamp never lets a write lose to one it has seen.
"""

from __future__ import annotations

from graphrep.errors import InvalidArgument

__all__ = ["HLC", "LOGICAL_BITS", "REGION_BITS", "pack", "unpack"]

REGION_BITS = 8
LOGICAL_BITS = 14
_MS_SHIFT = LOGICAL_BITS + REGION_BITS
_MAX_MS = (1 << (63 - _MS_SHIFT)) - 1
_MAX_LOGICAL = (1 << LOGICAL_BITS) - 1


def pack(ms: int, logical: int, region: int) -> int:
    """The timestamp of (ms, logical, region)."""
    if not 0 <= region < 1 << REGION_BITS:
        raise InvalidArgument(f"region index must be in [0, {1 << REGION_BITS}), got {region}")
    if not 0 <= ms <= _MAX_MS or not 0 <= logical <= _MAX_LOGICAL:
        raise InvalidArgument(f"timestamp out of range: ms={ms}, logical={logical}")
    return (ms << _MS_SHIFT) | (logical << REGION_BITS) | region


def unpack(ts: int) -> tuple[int, int, int]:
    """(ms, logical, region) of a timestamp."""
    return (ts >> _MS_SHIFT, (ts >> REGION_BITS) & _MAX_LOGICAL, ts & ((1 << REGION_BITS) - 1))


class HLC:
    """The clock of one writer in region ``region`` (its index among the shard's regions)."""

    def __init__(self, region: int) -> None:
        pack(0, 0, region)  # checks the index
        self.region = region
        self.ms = 0
        self.logical = 0

    @property
    def last(self) -> int:
        """The largest timestamp issued or observed (as this region's)."""
        return pack(self.ms, self.logical, self.region)

    def tick(self, now_ns: int) -> int:
        """A new timestamp for a local event at physical time ``now_ns`` (the node's
        clock, in ns): above everything issued or observed."""
        ms = max(int(now_ns) // 1_000_000, 0)
        if ms > self.ms:
            self.ms, self.logical = ms, 0
        else:
            self.logical += 1
            if self.logical > _MAX_LOGICAL:  # a burst within one ms: borrow the next ms
                self.ms, self.logical = self.ms + 1, 0
        return pack(self.ms, self.logical, self.region)

    def observe(self, ts: int) -> None:
        """Take in a timestamp seen in an entry: later ticks are above it."""
        ms, logical, _ = unpack(int(ts))
        if (ms, logical) > (self.ms, self.logical):
            self.ms, self.logical = ms, logical
