"""Shared test configuration: the Hypothesis profiles of :mod:`graphrep.spec.profiles`
(``ci``, ``dev``, ``nightly``; pick one with ``HYPOTHESIS_PROFILE``; ``ci`` is the
default when ``CI`` is set).

Tests that want fewer examples than the profile (because one example is expensive)
scale the profile's ``max_examples`` with :func:`scaled_examples`, so that ``nightly``
still makes them run longer.
"""

from __future__ import annotations

from hypothesis import settings

from graphrep.spec.profiles import load

load()


def scaled_examples(fraction: float, minimum: int = 5) -> int:
    """``fraction`` of the loaded profile's ``max_examples`` (at least ``minimum``).

    For properties whose single example is expensive: under ``dev``/``ci`` they
    run a handful of examples, under ``nightly`` proportionally many more.
    """
    return max(minimum, int(settings.default.max_examples * fraction))
