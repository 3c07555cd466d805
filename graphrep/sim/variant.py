"""Which event loop a process runs: the compiled one where it was built, else plain Python.

:mod:`graphrep.sim._loop` is the simulator's event loop; ``make fast-sim``
(:mod:`graphrep.sim.build_fast`) can compile it with mypyc to ``_loop_compiled``. This
module chooses, once, when it is imported, which of the two runs (:func:`implementation`)
and takes from that one module every name the loop compares by identity or builds: the
records (``Node``, ``Route``, ``Event``), the ``NOT_RUN`` marker, the event kinds, the
node states and ``FOREVER``. :mod:`graphrep.sim.host` and :mod:`graphrep.sim.engine`
import them from here, so they always use the loop's own.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

from graphrep.sim import _loop as _pure

__all__ = ["CALL", "DELIVER", "DOWN", "FOREVER", "LOOP_VARIANT", "NOT_RUN", "PAUSED", "PURE_ENV",
           "START", "TIMER", "UP", "Event", "Node", "Route", "implementation", "loop",
           "source_digest"]

PURE_ENV = "GRAPHREP_SIM_PURE"
"""Set to 1 to run the plain-Python loop even where the compiled one was built."""


def source_digest() -> str:
    """The sha256 of ``_loop.py``: a compiled loop is used only if built from this source."""
    return hashlib.sha256(Path(_pure.__file__).read_bytes()).hexdigest()


def implementation() -> ModuleType:
    """The loop module to run: the mypyc-compiled ``_loop_compiled`` if it was built
    (``make fast-sim``) from the current ``_loop.py`` and not switched off with
    ``GRAPHREP_SIM_PURE=1``, else the plain-Python ``_loop``. A stale build (the source
    changed since) is ignored with a warning rather than run: the two must behave
    identically, and only the same source guarantees it."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return _pure
    try:
        compiled = importlib.import_module("graphrep.sim._loop_compiled")
    except ImportError:
        return _pure
    try:
        current = source_digest()
    except OSError:
        return _pure
    if not str(getattr(compiled, "__file__", "")).endswith(tuple(EXTENSION_SUFFIXES)):
        return _pure  # a leftover source copy from an interrupted build, not compiled code
    if getattr(compiled, "SOURCE_DIGEST", None) != current:
        warnings.warn("graphrep.sim: the compiled event loop was built from another version "
                      "of _loop.py; running the plain-Python loop (rebuild: make fast-sim)",
                      RuntimeWarning, stacklevel=2)
        return _pure
    return compiled


loop = implementation()
"""The loop module this process runs: ``_loop_compiled`` or ``_loop``."""
LOOP_VARIANT = "python" if loop is _pure else "mypyc"
"""Which event loop this process runs: ``"mypyc"`` (compiled) or ``"python"``."""

# Everything the loop compares by identity or builds comes from the one module it runs.
Node = loop.Node
Route = loop.Route
Event = loop.Event
NOT_RUN = loop.NOT_RUN
DELIVER, TIMER, START, CALL = loop.DELIVER, loop.TIMER, loop.START, loop.CALL
UP, PAUSED, DOWN = loop.UP, loop.PAUSED, loop.DOWN
FOREVER = loop.FOREVER
