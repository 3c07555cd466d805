"""Shared test configuration: the Hypothesis profiles of :mod:`graphrep.spec.profiles`
(``ci``, ``dev``, ``nightly``; pick one with ``HYPOTHESIS_PROFILE``; ``ci`` is the
default when ``CI`` is set).

Tests that want fewer examples than the profile (because one example is expensive)
scale the profile's ``max_examples`` with
:func:`graphrep.spec.profiles.scaled_examples`, so that ``nightly`` still makes them
run longer.
"""

from __future__ import annotations

from graphrep.spec.profiles import load

load()
