"""Hypothesis strategies for fault schedules, shared by tests and users.

Hypothesis is a test dependency, so nothing in the package imports this module; import
it from tests. Schedules come out sorted by time and shrink towards fewer, earlier
faults, which is what makes a shrunk counterexample readable.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from graphrep.sim.nemesis import Fault

__all__ = ["faults", "schedules"]


def faults(nodes: Sequence[str], max_time_ns: int, *,
           kinds: Sequence[str] = ("crash", "restart", "pause", "resume", "partition",
                                   "partition_one_way", "heal", "loss", "duplicate"),
           max_p: float = 0.5) -> st.SearchStrategy[Fault]:
    """One valid fault of one of ``kinds`` on ``nodes`` at a time in [0, max_time_ns]."""
    names = list(nodes)
    times = st.integers(0, max_time_ns)
    subsets = st.lists(st.sampled_from(names), unique=True, min_size=1).map(tuple)
    options = []
    for kind in kinds:
        if kind in ("crash", "restart", "pause", "resume"):
            options.append(st.builds(Fault, times, st.just(kind), node=st.sampled_from(names)))
        elif kind == "partition":
            options.append(st.builds(
                Fault, times, st.just(kind),
                groups=st.permutations(names).flatmap(
                    lambda p: st.integers(1, max(1, len(p) - 1)).map(
                        lambda k, p=p: (tuple(p[:k]), tuple(p[k:]))))))
        elif kind == "partition_one_way":
            options.append(st.builds(Fault, times, st.just(kind),
                                     groups=st.tuples(subsets, subsets)))
        elif kind == "heal":
            options.append(st.builds(Fault, times, st.just(kind)))
        else:
            options.append(st.builds(Fault, times, st.just(kind),
                                     p=st.floats(0.0, max_p, allow_nan=False)))
    return st.one_of(options)


def schedules(nodes: Sequence[str], max_time_ns: int, *, max_faults: int = 10,
              **kwargs) -> st.SearchStrategy[list[Fault]]:
    """A list of up to ``max_faults`` faults, sorted by time (stable)."""
    return st.lists(faults(nodes, max_time_ns, **kwargs), max_size=max_faults).map(
        lambda fs: sorted(fs, key=lambda f: f.time_ns))
