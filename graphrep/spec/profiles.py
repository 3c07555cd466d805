"""Hypothesis profiles for the specification (the test suite and ``graphrep mutants``).

* ``ci``      derandomized (the same examples on every run), a modest number of
              examples, no deadline: the default test run stays under 10 minutes on
              2 cores. The default when the environment variable ``CI`` is set.
* ``dev``     the default on a workstation: random examples, a small example
              budget so that the whole suite runs in a few minutes, no deadline.
* ``nightly`` thorough: 1000 examples per property, with the example database on
              so that failures found overnight are replayed first next time.

No profile has a deadline: Numba compiles a kernel on its first call (tens of
seconds on a cold cache), which would make the first example of a property look
slow. Pick a profile with ``HYPOTHESIS_PROFILE``; :func:`load` applies the choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

__all__ = ["PROFILES", "load", "register", "scaled_examples", "source_free_draws"]

PROFILES = ("ci", "dev", "nightly")
_SLOW_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def register() -> None:
    """Register the three profiles with Hypothesis (idempotent)."""
    settings.register_profile(
        "ci", derandomize=True, max_examples=50, deadline=None, database=None,
        print_blob=True, suppress_health_check=_SLOW_CHECKS)
    settings.register_profile(
        "dev", max_examples=50, deadline=None, suppress_health_check=_SLOW_CHECKS)
    settings.register_profile(
        "nightly", max_examples=1000, deadline=None,
        database=DirectoryBasedExampleDatabase(".hypothesis/examples"), phases=list(Phase),
        print_blob=True, suppress_health_check=_SLOW_CHECKS)


def load(name: str | None = None) -> str:
    """Load ``name``, else ``$HYPOTHESIS_PROFILE``, else ``ci`` under CI and ``dev``
    elsewhere; returns the name loaded."""
    register()
    chosen = name or os.environ.get("HYPOTHESIS_PROFILE") or (
        "ci" if os.environ.get("CI") else "dev")
    settings.load_profile(chosen)
    return chosen


def scaled_examples(fraction: float, minimum: int = 5) -> int:
    """``fraction`` of the loaded profile's ``max_examples`` (at least ``minimum``).

    For properties whose single example is expensive: under ``dev``/``ci`` they
    run a handful of examples, under ``nightly`` proportionally many more.
    """
    return max(minimum, int(settings.default.max_examples * fraction))


@contextmanager
def source_free_draws() -> Iterator[None]:
    """Within this block, Hypothesis draws none of the constants it finds in the source
    of the project's loaded modules.

    Besides its own values, Hypothesis mixes in (in about 5% of draws) integers and
    strings it reads from every loaded module outside site-packages. A derandomized run
    then draws different examples whenever a module is edited, or when another test
    has loaded one more module first: the specification found one planted bug at its
    4th example in one process and its 343rd in another. Without them, a derandomized
    run of the specification draws the same examples in any process, on any commit
    that leaves the specification itself alone. This reaches into a private part of
    Hypothesis; where that part is missing, nothing changes (draws only vary)."""
    try:
        from hypothesis.internal.conjecture import providers

        get, cache, empty = (providers._get_local_constants, providers.CONSTANTS_CACHE,
                             providers.Constants())
    except (ImportError, AttributeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.cache.clear()  # the values permitted per draw, local constants included
    try:
        yield
    finally:
        providers._get_local_constants = get
        cache.cache.clear()
