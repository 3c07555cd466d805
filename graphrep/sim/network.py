"""The network model: regions, latency distributions, loss, duplication, reordering.

Every directed link ``src -> dst`` draws its delays from its own random stream
(``link:src->dst``) and its loss/duplication coin flips from another
(``link:src->dst:faults``); every send draws exactly one delay, lost or not, and a
duplicate's extra delay comes from a third stream, a reordering's coin and extra delay
from two more. So turning loss, duplication or reordering on does not change the delay
of any message that gets through untouched, and adding a node does not change the
draws of existing links. Delays are drawn in fixed-size batches with numpy and handed
out one by one: the batch size is a constant, so the sequence a link produces does not
depend on when it is consumed, and the engine pays a C-level step per message instead
of a numpy call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, Literal

import numpy as np

from graphrep.errors import InvalidArgument
from graphrep.sim.rng import RandomStreams

__all__ = ["BATCH", "LatencyModel", "Link", "Network", "NetworkConfig"]

BATCH = 1024
"""Draws per refill; part of the determinism contract (changing it changes every run)."""

Kind = Literal["constant", "uniform", "exponential", "lognormal"]


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """One-way delay of a region pair, in ns: a distribution plus uniform jitter [0, jitter).

    ``constant`` and ``exponential`` use ``mean_ns``; ``uniform`` uses ``low_ns``..``high_ns``;
    ``lognormal`` has median ``mean_ns`` and shape ``sigma``. Build with the classmethods.
    """

    kind: Kind = "constant"
    mean_ns: int = 0
    low_ns: int = 0
    high_ns: int = 0
    sigma: float = 0.0
    jitter_ns: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "uniform", "exponential", "lognormal"):
            raise InvalidArgument(f"unknown latency distribution {self.kind!r}")
        for name in ("mean_ns", "low_ns", "high_ns", "jitter_ns"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{name} must be a non-negative int, got {value!r}")
        if self.kind == "uniform" and self.high_ns < self.low_ns:
            raise InvalidArgument(f"uniform latency needs low <= high, got "
                                  f"{self.low_ns} > {self.high_ns}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise InvalidArgument(f"sigma must be finite and >= 0, got {self.sigma!r}")

    @classmethod
    def constant(cls, ns: int, jitter_ns: int = 0) -> LatencyModel:
        """Always ``ns`` (plus the jitter)."""
        return cls("constant", mean_ns=ns, jitter_ns=jitter_ns)

    @classmethod
    def exponential(cls, mean_ns: int, jitter_ns: int = 0) -> LatencyModel:
        """Exponentially distributed with mean ``mean_ns`` (plus the jitter)."""
        return cls("exponential", mean_ns=mean_ns, jitter_ns=jitter_ns)

    @classmethod
    def uniform(cls, low_ns: int, high_ns: int, jitter_ns: int = 0) -> LatencyModel:
        """Uniform in ``[low_ns, high_ns]`` (plus the jitter)."""
        return cls("uniform", low_ns=low_ns, high_ns=high_ns, jitter_ns=jitter_ns)

    @classmethod
    def lognormal(cls, median_ns: int, sigma: float, jitter_ns: int = 0) -> LatencyModel:
        """Log-normal with median ``median_ns`` and shape ``sigma`` (plus the jitter)."""
        return cls("lognormal", mean_ns=median_ns, sigma=sigma, jitter_ns=jitter_ns)

    def expected_ns(self) -> float:
        """The mean one-way delay in ns (jitter included)."""
        if self.kind == "uniform":
            base = (self.low_ns + self.high_ns) / 2
        elif self.kind == "lognormal":
            base = self.mean_ns * float(np.exp(self.sigma ** 2 / 2))
        else:
            base = float(self.mean_ns)
        return base + self.jitter_ns / 2

    def draw(self, gen: np.random.Generator, n: int) -> list[int]:
        """``n`` delays in ns, as Python ints."""
        if self.kind == "constant":
            base = np.full(n, float(self.mean_ns))
        elif self.kind == "uniform":
            base = gen.uniform(self.low_ns, self.high_ns, n)
        elif self.kind == "exponential":
            base = gen.exponential(float(self.mean_ns), n)
        else:
            base = gen.lognormal(math.log(max(self.mean_ns, 1)), self.sigma, n)
        if self.jitter_ns:
            base = base + gen.uniform(0.0, float(self.jitter_ns), n)
        return np.rint(base).astype(np.int64).tolist()


def _check_probability(name: str, p: float) -> None:
    if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
        raise InvalidArgument(f"{name} must be a probability in [0, 1], got {p!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """Latency per region pair (looked up both ways, else ``default``), loss, duplication."""

    default: LatencyModel = field(default_factory=lambda: LatencyModel.constant(1_000_000))
    regions: Mapping[tuple[str, str], LatencyModel] = field(default_factory=dict)
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Probability that a message is held back by an extra ``reorder_delay``, so that
    later messages on its link may overtake it (latency spread reorders too; this makes
    it explicit, e.g. with constant latency)."""
    reorder_delay: LatencyModel = field(
        default_factory=lambda: LatencyModel.uniform(0, 10_000_000))
    bandwidth_bps: int = 0
    """Bits per second of every link (0: unlimited); see ``bandwidth`` for region pairs."""
    bandwidth: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_probability("loss", self.loss)
        _check_probability("duplicate", self.duplicate)
        _check_probability("reorder", self.reorder)
        for bps in (self.bandwidth_bps, *self.bandwidth.values()):
            if not isinstance(bps, int) or isinstance(bps, bool) or bps < 0:
                raise InvalidArgument(f"bandwidth must be an int >= 0 bits/s, got {bps!r}")

    def bits_per_second(self, a: str, b: str) -> int:
        """Bandwidth of the region pair (a, b), looked up both ways, else the default."""
        bps = self.bandwidth.get((a, b))
        if bps is None:
            bps = self.bandwidth.get((b, a), self.bandwidth_bps)
        return bps

    def latency(self, a: str, b: str) -> LatencyModel:
        """The model of the region pair (a, b), symmetric unless both orders are given."""
        model = self.regions.get((a, b))
        if model is None:
            model = self.regions.get((b, a), self.default)
        return model

    @classmethod
    def from_graph(cls, graph: Any, **options: Any) -> NetworkConfig:
        """A config whose region pairs are the edges of a networkx graph.

        Nodes are regions (str). Each edge ``(a, b)`` carries the pair's one-way latency
        in its attribute ``latency``: a number of milliseconds (a constant delay, rounded
        to the ns) or a :class:`LatencyModel`. A self loop is the latency inside a region.
        An undirected edge holds both ways; a directed edge ``a -> b`` holds for the
        other way too unless ``b -> a`` has an edge of its own (as :meth:`latency` looks
        pairs up). Pairs without an edge use ``default``; ``options`` are the other
        fields (``default``, ``loss``...). Every pair gets the model it would get from
        ``regions={(a, b): model, ...}``, so a run is the same given either way.
        """
        if "regions" in options:
            raise InvalidArgument("from_graph takes the regions from the graph's edges")
        regions: dict[tuple[str, str], LatencyModel] = {}
        for a, b, value in graph.edges(data="latency"):
            if not (isinstance(a, str) and isinstance(b, str)):
                raise InvalidArgument(f"regions are named by str, got the edge {(a, b)!r}")
            if isinstance(value, LatencyModel):
                model = value
            elif isinstance(value, int | float | np.integer | np.floating) and \
                    not isinstance(value, bool) and math.isfinite(value) and value >= 0:
                model = LatencyModel.constant(round(float(value) * 1_000_000))
            else:
                raise InvalidArgument(f"edge ({a!r}, {b!r}) needs a latency: a number of ms "
                                      f">= 0 or a LatencyModel, got {value!r}")
            regions[(a, b) if graph.is_directed() else (min(a, b), max(a, b))] = model
        return cls(regions=dict(sorted(regions.items())), **options)


def _values(draw: Callable[[], list]) -> Iterator[Any]:
    """An endless iterator over the values of the batches ``draw()`` returns.

    ``chain.from_iterable`` over an endless ``map`` keeps the per-value step in C: a
    Python call happens once per batch, not once per value (a generator would resume a
    Python frame for every message).
    """
    return chain.from_iterable(map(lambda _: draw(), repeat(None)))


def _stream(draw: Callable[[], list]) -> Callable[[], Any]:
    """One value at a time out of the batches ``draw()`` returns (see :func:`_values`)."""
    return _values(draw).__next__


class Link:
    """A directed link: its delay streams, its fault-coin stream and its queue.

    With a bandwidth, messages leave one after the other: a message starts serializing
    when the link is free (``free_at``) and takes ``size * 8 / bps`` seconds, then flies
    for its drawn latency. The engine counts the messages and bytes sent on a link in
    its own per-link record (``graphrep.sim._loop.Route``, read by
    ``Simulation.link_stats``), which its hot loop reads as a C struct when compiled.
    """

    __slots__ = ("bps", "coin", "delay", "delays", "dst", "dup_delay", "free_at", "reorder_coin",
                 "reorder_delay", "src")

    def __init__(self, src: str, dst: str, model: LatencyModel, streams: RandomStreams,
                 bps: int = 0, reorder_model: LatencyModel | None = None) -> None:
        self.src = src
        self.dst = dst
        self.bps = bps
        self.free_at = 0
        gen = streams.generator(f"link:{src}->{dst}")
        faults = streams.generator(f"link:{src}->{dst}:faults")
        dups = streams.generator(f"link:{src}->{dst}:duplicates")
        reorder = streams.generator(f"link:{src}->{dst}:reorder")
        reorder_delays = streams.generator(f"link:{src}->{dst}:reorder-delay")
        extra = reorder_model if reorder_model is not None else model
        # the engine's hot loop takes ``next(delays)``: cheaper than calling ``delay``
        self.delays: Iterator[int] = _values(lambda: model.draw(gen, BATCH))
        self.delay: Callable[[], int] = self.delays.__next__
        self.dup_delay: Callable[[], int] = _stream(lambda: model.draw(dups, BATCH))
        self.coin: Callable[[], float] = _stream(lambda: faults.random(BATCH).tolist())
        # reordering has a stream of its own: turning it on shifts no other draw
        self.reorder_coin: Callable[[], float] = _stream(lambda: reorder.random(BATCH).tolist())
        self.reorder_delay: Callable[[], int] = _stream(lambda: extra.draw(reorder_delays, BATCH))


class Network:
    """Links created on first use, fault probabilities and the set of blocked directed pairs."""

    def __init__(self, config: NetworkConfig, streams: RandomStreams) -> None:
        self.config = config
        self.streams = streams
        self.loss = config.loss
        self.duplicate = config.duplicate
        self.reorder = config.reorder
        # one test per send in the hot loop
        self.faulty = bool(self.loss or self.duplicate or self.reorder)
        self.blocked: set[tuple[str, str]] = set()  # membership tests only, never iterated
        # held links: their arriving messages (the engine's delivery events) wait here, in
        # order, until released
        self.held: dict[tuple[str, str], list[tuple]] = {}

    def set_faults(self, *, loss: float | None = None, duplicate: float | None = None,
                   reorder: float | None = None) -> None:
        """Change loss/duplication/reordering probabilities from now on."""
        for name, p in (("loss", loss), ("duplicate", duplicate), ("reorder", reorder)):
            if p is not None:
                _check_probability(name, p)
        if loss is not None:
            self.loss = loss
        if duplicate is not None:
            self.duplicate = duplicate
        if reorder is not None:
            self.reorder = reorder
        self.faulty = bool(self.loss or self.duplicate or self.reorder)

    def link(self, src: str, src_region: str, dst: str, dst_region: str) -> Link:
        """A new link object; the engine caches it per (src, dst)."""
        return Link(src, dst, self.config.latency(src_region, dst_region), self.streams,
                    self.config.bits_per_second(src_region, dst_region),
                    self.config.reorder_delay)

    @staticmethod
    def queue_delay(link: Link, now: int, size: int) -> int:
        """Wait for the link plus serialization time of ``size`` bytes; advances the queue."""
        start = now if now > link.free_at else link.free_at
        link.free_at = start + (size * 8_000_000_000) // link.bps
        return link.free_at - now
