"""Named geo-region latency presets: ``eu``, ``us`` and ``ap``.

The numbers are approximate one-way latencies between public cloud regions (western
Europe, the US east coast, north-east Asia), rounded:

========  ==========================================================
eu - us   40 ms
us - ap   90 ms
eu - ap   120 ms
inside    uniform 0.5 - 2 ms (between availability zones of a region)
========  ==========================================================

Between two regions a message takes the preset's delay plus a uniform jitter in
``[0, 5%)`` of it (``LatencyModel.jitter_ns``), so eu -> us takes 40 to 42 ms. A preset
is symmetric: both directions of a pair draw from the same model (each link from its
own random stream, see :mod:`graphrep.sim.network`).

:func:`region_latency` gives a run's ``(region, region, LatencyModel)`` entries
(``ClusterConfig.region_latency``, or ``NetworkConfig.regions`` as a dict) and
:func:`nodes_in_regions` the region of each node (``ClusterConfig.replica_regions``)::

    regions = ("eu", "us", "ap")
    ClusterConfig(nodes=9, replica_regions=nodes_in_regions(regions, 3),
                  region_latency=region_latency(regions))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from graphrep.errors import InvalidArgument
from graphrep.sansio import MS
from graphrep.sim.network import LatencyModel

__all__ = ["INTRA_REGION", "JITTER_PERCENT", "REGION_PRESET", "known_regions",
           "nodes_in_regions", "region_latency"]

REGION_PRESET: Mapping[tuple[str, str], int] = MappingProxyType({
    ("eu", "us"): 40 * MS,
    ("ap", "us"): 90 * MS,
    ("ap", "eu"): 120 * MS,
})
"""One-way delay in ns between two regions (approximate public cloud latencies), before
jitter. The pair is unordered: each is keyed once, by its two names in alphabetical
order (``("eu", "us")``); both directions take this delay."""

INTRA_REGION: LatencyModel = LatencyModel.uniform(MS // 2, 2 * MS)
"""One-way delay between two nodes of one region: uniform in 0.5 - 2 ms."""

JITTER_PERCENT = 5
"""Jitter between two regions, in percent of the pair's one-way delay: a uniform extra
delay in ``[0, JITTER_PERCENT% of the delay)``."""

_KNOWN: tuple[str, ...] = ("eu", "us", "ap")


def known_regions() -> tuple[str, ...]:
    """The names of the preset regions: ``("eu", "us", "ap")``."""
    return _KNOWN


def _check(regions: Sequence[str]) -> tuple[str, ...]:
    """``regions`` as a tuple, refused unless each is a known region named once."""
    if isinstance(regions, str) or not isinstance(regions, Sequence):
        raise InvalidArgument(f"regions are a sequence of region names such as "
                              f"{list(_KNOWN)}, got {regions!r}")
    names = tuple(regions)
    if not names:
        raise InvalidArgument(f"give at least one region; known regions: "
                              f"{', '.join(_KNOWN)}")
    unknown = [r for r in names if r not in _KNOWN]
    if unknown:
        raise InvalidArgument(f"unknown region(s) {', '.join(map(repr, unknown))}; known "
                              f"regions: {', '.join(_KNOWN)}")
    repeated = sorted({r for r in names if names.count(r) > 1})
    if repeated:
        raise InvalidArgument(f"region(s) {', '.join(map(repr, repeated))} given more than "
                              f"once; name each region once")
    return names


def _model(a: str, b: str) -> LatencyModel:
    """The preset's model of the region pair (a, b), in either order."""
    if a == b:
        return INTRA_REGION
    ns = REGION_PRESET[(a, b) if a < b else (b, a)]
    return LatencyModel.constant(ns, jitter_ns=ns * JITTER_PERCENT // 100)


def region_latency(regions: Sequence[str]) -> tuple[tuple[str, str, LatencyModel], ...]:
    """The preset latency of every ordered pair of ``regions``, ``(r, r)`` included:
    ``(src, dst, model)`` entries, in the order ``regions`` are given (source-major).

    This is the form ``ClusterConfig.region_latency`` takes; ``{(a, b): m for a, b, m in
    ...}`` is a ``NetworkConfig.regions``. Every pair is listed both ways with the same
    model, so a lookup in either order finds it. Raises :class:`InvalidArgument` for an
    unknown or repeated region.
    """
    names = _check(regions)
    return tuple((a, b, _model(a, b)) for a in names for b in names)


def nodes_in_regions(regions: Sequence[str], per_region: int) -> tuple[str, ...]:
    """The region of each node r0, r1, ...: ``per_region`` nodes in each of ``regions``,
    region-major (r0 .. r{per_region - 1} in the first region, and so on).

    This is the form ``ClusterConfig.replica_regions`` takes, with ``nodes =
    len(regions) * per_region``. Raises :class:`InvalidArgument` for an unknown or
    repeated region, or ``per_region`` < 1.
    """
    names = _check(regions)
    if not isinstance(per_region, int) or isinstance(per_region, bool) or per_region < 1:
        raise InvalidArgument(f"per_region must be an int >= 1, got {per_region!r}")
    return tuple(r for r in names for _ in range(per_region))
