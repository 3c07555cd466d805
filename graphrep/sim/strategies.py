"""Hypothesis strategies for fault schedules, shared by tests and users.

Hypothesis is a test dependency, so nothing in the package imports this module; import
it from tests. Schedules come out sorted by time and shrink towards fewer, earlier
faults, which is what makes a shrunk counterexample readable.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from graphrep.sim.nemesis import Fault

__all__ = ["ALL_KINDS", "faults", "schedules"]


ALL_KINDS: tuple[str, ...] = ("crash", "restart", "pause", "resume", "partition",
                              "partition_one_way", "partition_regions", "heal", "hold",
                              "release", "clock", "loss", "duplicate", "reorder")
"""Every fault kind; ``partition_regions`` is drawn only when ``regions`` are given."""


def faults(nodes: Sequence[str], max_time_ns: int, *,
           kinds: Sequence[str] = ("crash", "restart", "pause", "resume", "partition",
                                   "partition_one_way", "heal", "loss", "duplicate"),
           max_p: float = 0.5, regions: Sequence[str] = (),
           max_skew_ns: int = 100_000_000, max_drift_ppm: int = 100_000,
           ) -> st.SearchStrategy[Fault]:
    """One valid fault of one of ``kinds`` on ``nodes`` at a time in [0, max_time_ns].

    The default kinds are the classic nemesis (crashes, pauses, partitions, loss,
    duplication); pass ``kinds=ALL_KINDS`` (and ``regions``) for every fault the
    simulator has.
    """
    names = list(nodes)
    times = st.integers(0, max_time_ns)
    subsets = st.lists(st.sampled_from(names), unique=True, min_size=1).map(tuple)

    def sides(items: list[str]) -> st.SearchStrategy[tuple[tuple[str, ...], ...]]:
        return st.permutations(items).flatmap(
            lambda p: st.integers(1, max(1, len(p) - 1)).map(
                lambda k, p=p: (tuple(p[:k]), tuple(p[k:]))))

    links = st.permutations(names).map(lambda p: (p[0], p[1]))
    options = []
    for kind in kinds:
        if kind in ("crash", "restart", "pause", "resume"):
            options.append(st.builds(Fault, times, st.just(kind), node=st.sampled_from(names)))
        elif kind == "partition":
            options.append(st.builds(Fault, times, st.just(kind), groups=sides(names)))
        elif kind == "partition_regions":
            if len(regions) >= 2:
                options.append(st.builds(Fault, times, st.just(kind),
                                         groups=sides(sorted(regions))))
        elif kind == "partition_one_way":
            options.append(st.builds(Fault, times, st.just(kind),
                                     groups=st.tuples(subsets, subsets)))
        elif kind == "heal":
            options.append(st.builds(Fault, times, st.just(kind)))
        elif kind in ("hold", "release"):
            options.append(links.flatmap(lambda ab, kind=kind: st.builds(
                Fault, times, st.just(kind), node=st.just(ab[0]), peer=st.just(ab[1]))))
        elif kind == "clock":
            options.append(st.builds(
                Fault, times, st.just(kind), node=st.sampled_from(names),
                offset_ns=st.integers(-max_skew_ns, max_skew_ns),
                drift_ppm=st.integers(-max_drift_ppm, max_drift_ppm)))
        else:
            options.append(st.builds(Fault, times, st.just(kind),
                                     p=st.floats(0.0, max_p, allow_nan=False)))
    return st.one_of(options)


def schedules(nodes: Sequence[str], max_time_ns: int, *, max_faults: int = 10,
              **kwargs) -> st.SearchStrategy[list[Fault]]:
    """A list of up to ``max_faults`` faults, sorted by time (stable)."""
    return st.lists(faults(nodes, max_time_ns, **kwargs), max_size=max_faults).map(
        lambda fs: sorted(fs, key=lambda f: f.time_ns))
