"""The sans-IO process interface, as the simulator's users know it.

It lives in :mod:`graphrep.sansio` so that the protocol, which must not import the
simulator, shares it with the simulator; this module re-exports every name of it
(``graphrep.sansio.__all__``, and ``MS``) unchanged.
"""

from graphrep import sansio as _sansio
from graphrep.sansio import *  # noqa: F403  (the whole interface, by sansio's own list)
from graphrep.sansio import MS

__all__ = [*_sansio.__all__, "MS"]
