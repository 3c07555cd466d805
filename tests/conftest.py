"""Shared test configuration: Hypothesis profiles.

Profiles (pick one with the environment variable ``HYPOTHESIS_PROFILE``):

* ``ci``      derandomized (the same examples on every run), a modest number of
              examples, no deadline. The default when the variable ``CI`` is set.
* ``dev``     the default on a workstation: random examples, a small example
              budget so that the whole suite runs in a few minutes, no deadline.
* ``nightly`` thorough: 1000+ examples per property, with the example database
              on so that failures found overnight are replayed first next time.

No profile has a deadline: Numba compiles a kernel on its first call (tens of
seconds on a cold cache), which would make the first example of a property
look slow. Tests that want fewer examples than the profile (because one
example is expensive) scale the profile's ``max_examples`` with
:func:`scaled_examples`, so that ``nightly`` still makes them run longer.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

_SLOW_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=50,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_CHECKS,
)
settings.register_profile(
    "dev",
    max_examples=50,
    deadline=None,
    suppress_health_check=_SLOW_CHECKS,
)
settings.register_profile(
    "nightly",
    max_examples=1000,
    deadline=None,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    phases=list(Phase),
    print_blob=True,
    suppress_health_check=_SLOW_CHECKS,
)

_default_profile = "ci" if os.environ.get("CI") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default_profile))


def scaled_examples(fraction: float, minimum: int = 5) -> int:
    """``fraction`` of the loaded profile's ``max_examples`` (at least ``minimum``).

    For properties whose single example is expensive: under ``dev``/``ci`` they
    run a handful of examples, under ``nightly`` proportionally many more.
    """
    return max(minimum, int(settings.default.max_examples * fraction))
