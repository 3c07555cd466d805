"""Hypothesis stateful machines over the simulator and the protocol: the specification.

``spec_machine("leader")`` returns a ``RuleBasedStateMachine`` class whose rules are
the steps of :class:`~graphrep.spec.world.SpecWorld`: writes and searches at a chosen
replica with a chosen write concern; partitions (groups, one-way, by region) and heal;
crash, restart and leader kills; a message in flight dropped, duplicated, delayed or
its link held (Hypothesis picks which message); time passing; anti-entropy; a replica's
graph corrupted behind the protocol's back. The run-time invariants are the machine's
``@invariant`` methods, which Hypothesis checks after every step; each calls the check
of :mod:`graphrep.spec.invariants` that the fuzzer and :func:`~graphrep.spec.world.replay`
run too. The teardown checks the end state.

Run it as a test with ``spec_machine("leader").TestCase`` (tests/spec does so for every
registered policy), or with :func:`run_spec`, which also reports how many examples ran
before the first failure and the shrunk failing steps (``graphrep mutants`` uses it).

A failure prints the shrunk steps as Hypothesis's usual ``state.insert(...)`` lines
plus a note with the world's config and the steps as JSON: pass both to
:func:`graphrep.spec.world.replay` to run it again outside Hypothesis. Under the ``ci``
profile the run is derandomized (the same examples every time), and Hypothesis prints
a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, cast

from hypothesis import HealthCheck, Phase, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from graphrep.errors import InvalidArgument, InvariantViolation
from graphrep.protocol.config import CONCERNS
from graphrep.spec import invariants
from graphrep.spec.profiles import source_free_draws
from graphrep.spec.registry import ReplicaClass
from graphrep.spec.steps import Step
from graphrep.spec.world import Placer, SpecWorld, WorldConfig, replay

__all__ = ["SpecMachine", "SpecReport", "run_spec", "shrink_steps", "spec_machine"]


@dataclass
class SpecReport:
    """What :func:`run_spec` saw."""

    passed: bool
    invariant: str | None = None
    detail: str = ""
    examples_to_failure: int | None = None
    examples: int = 0
    steps: list[Step] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = [repr(s) for s in self.steps]
        return out


class SpecMachine(RuleBasedStateMachine):
    """The rules; subclasses made by :func:`spec_machine` set the class variables."""

    world_config: ClassVar[WorldConfig] = WorldConfig()
    replica: ClassVar[ReplicaClass | None] = None
    placer: ClassVar[Placer | None] = None
    examples: ClassVar[int] = 0
    failures: ClassVar[list[tuple[InvariantViolation, int, list[Step], WorldConfig]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.world: SpecWorld | None = None

    # the world's layout, for the strategies below
    _nodes = tuple(n for n, _ in WorldConfig().nodes)
    _shards = tuple(s for s, _ in WorldConfig().shards)

    def _do(self, kind: str, **args: Any) -> None:
        """Run one step; the ``@invariant`` methods check the world afterwards."""
        if self.world is None:
            return
        try:
            self.world.act(Step(kind, **args))
        except InvariantViolation as exc:  # no_process_error
            self._failed(exc)
            raise

    def _check(self, check: Callable[[SpecWorld], None]) -> None:
        if self.world is None:
            return
        try:
            check(self.world)
        except InvariantViolation as exc:
            self._failed(exc)
            raise

    def _failed(self, exc: InvariantViolation) -> None:
        cls = type(self)
        world = self.world
        if world is None:
            return
        cls.failures.append((exc, cls.examples, list(world.steps), world.config))
        note(f"replay: graphrep.spec.replay(WorldConfig(**{json.dumps(asdict(world.config))}"
             f"), [Step.from_json(s) for s in {json.dumps([s.to_json() for s in world.steps])}]"
             f"){' with the replica under test' if cls.replica is not None else ''}")

    @initialize(sync=st.sampled_from(("always", "tick")), seed=st.integers(0, 255))
    def start(self, sync: str, seed: int) -> None:
        type(self).examples += 1
        self.world = SpecWorld(replace(self.world_config, sync=sync, seed=seed), self.replica,
                               self.placer)
        self._do("advance", ms=300)  # a first leader per shard

    @rule(shard=st.sampled_from(_shards), replica=st.integers(0, 2),
          concern=st.sampled_from(CONCERNS), count=st.integers(1, 8),
          read=st.integers(-1, 2))
    def insert(self, shard: int, replica: int, concern: str, count: int, read: int) -> None:
        self._do("insert", shard=shard, replica=replica, concern=concern, count=count,
                 read=read)

    @rule(shard=st.sampled_from(_shards), replica=st.integers(0, 2),
          concern=st.sampled_from(CONCERNS), count=st.integers(1, 8),
          read=st.integers(-1, 2))
    def insert_more(self, shard: int, replica: int, concern: str, count: int,
                    read: int) -> None:
        """The same as ``insert``: a second rule makes writes twice as likely a step."""
        self.insert(shard, replica, concern, count, read)

    @rule(shard=st.sampled_from(_shards), replica=st.integers(0, 2),
          concern=st.sampled_from(CONCERNS), pick=st.integers(0, 63))
    def delete(self, shard: int, replica: int, concern: str, pick: int) -> None:
        self._do("delete", shard=shard, replica=replica, concern=concern, pick=pick)

    @rule(shard=st.sampled_from(_shards), replica=st.integers(0, 2), pick=st.integers(0, 63))
    def search(self, shard: int, replica: int, pick: int) -> None:
        self._do("search", shard=shard, replica=replica, pick=pick)

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        """A partition of one of four shapes: two groups, one way, by region, or the
        leader of a shard alone."""
        shape = data.draw(st.sampled_from(("groups", "one_way", "regions", "leader")),
                          label="shape")
        if shape == "groups":
            order = data.draw(st.permutations(self._nodes), label="order")
            cut = data.draw(st.integers(1, len(order) - 1), label="cut")
            self._do("partition", groups=(tuple(sorted(order[:cut])),
                                          tuple(sorted(order[cut:]))))
        elif shape == "one_way":
            nodes = st.lists(st.sampled_from(self._nodes), min_size=1, max_size=2,
                             unique=True).map(lambda xs: tuple(sorted(xs)))
            self._do("one_way", sources=data.draw(nodes, label="sources"),
                     destinations=data.draw(nodes, label="destinations"))
        elif shape == "regions":
            self._do("region_split")
        else:
            self._do("isolate_leader", shard=data.draw(st.sampled_from(self._shards),
                                                       label="shard"))

    @rule(shard=st.sampled_from(_shards), count=st.integers(1, 4))
    def split_brain(self, shard: int, count: int) -> None:
        """A failover with writes on both sides (see ``StepActions.split_brain``)."""
        self._do("split_brain", shard=shard, count=count)

    @rule()
    def heal(self) -> None:
        self._do("heal")

    @rule(node=st.sampled_from(_nodes))
    def crash(self, node: str) -> None:
        self._do("crash", node=node)

    @rule(node=st.sampled_from(_nodes))
    def restart(self, node: str) -> None:
        self._do("restart", node=node)

    @rule(shard=st.sampled_from(_shards))
    def kill_leader(self, shard: int) -> None:
        self._do("kill_leader", shard=shard)

    @precondition(lambda self: self.world is not None and self.world.sim.in_flight > 0)
    @rule(kind=st.sampled_from(("drop", "duplicate", "delay", "hold_message")),
          pick=st.integers(0, 255), ms=st.sampled_from((1, 20, 100, 300)))
    def message(self, kind: str, pick: int, ms: int) -> None:
        """Drop, duplicate, delay or hold one message in flight (``pick`` chooses which;
        holding holds its link until a release or the end-of-run heal)."""
        if kind in ("drop", "hold_message"):
            self._do(kind, pick=pick)
        else:
            self._do(kind, pick=pick, ms=ms)

    @rule(hold=st.booleans(), link=st.permutations(_nodes).map(lambda p: (p[0], p[1])))
    def link(self, hold: bool, link: tuple[str, str]) -> None:
        """Hold a link (messages on it wait) or release it (they arrive, in order)."""
        self._do("hold" if hold else "release", src=link[0], dst=link[1])

    @rule(ms=st.sampled_from((1, 20, 100, 400)))
    def advance(self, ms: int) -> None:
        """Let time pass: a few fixed durations, from a message hop to longer than an
        election timeout (Hypothesis draws small integers far more often than large
        ones, which would make elections during a partition rare)."""
        self._do("advance", ms=ms)

    @rule(shard=st.sampled_from(_shards))
    def anti_entropy(self, shard: int) -> None:
        self._do("anti_entropy", shard=shard)

    @rule(shard=st.sampled_from(_shards), node=st.sampled_from(_nodes),
          pick=st.integers(0, 63))
    def corrupt(self, shard: int, node: str, pick: int) -> None:
        self._do("corrupt", shard=shard, node=node, pick=pick)

    # the run-time invariants (Hypothesis calls them by name, the order of
    # invariants.RUN_TIME)

    @invariant()
    def committed_entries_agree(self) -> None:
        self._check(invariants.committed_entries_agree)

    @invariant()
    def durability(self) -> None:
        self._check(invariants.durability)

    @invariant()
    def graph_health(self) -> None:
        self._check(invariants.graph_health)

    @invariant()
    def one_leader_per_term(self) -> None:
        self._check(invariants.one_leader_per_term)

    @invariant()
    def read_your_writes(self) -> None:
        self._check(invariants.read_your_writes)

    @invariant()
    def residency(self) -> None:
        self._check(invariants.residency)

    @invariant()
    def term_never_decreases(self) -> None:
        self._check(invariants.term_never_decreases)

    def teardown(self) -> None:
        """The end state (``SpecWorld.finish``: heal, quiesce, check)."""
        if self.world is None:
            return
        try:
            self.world.finish()
        except InvariantViolation as exc:
            self._failed(exc)
            raise


def spec_machine(policy: str = "leader", replica: ReplicaClass | None = None,
                 config: WorldConfig | None = None,
                 placer: Placer | None = None) -> type[SpecMachine]:
    """A machine class for ``policy`` (its registered replica, or ``replica``; the
    default placement, or ``placer``). ``config`` may change sizes and timings, not the
    layout: the rules draw from the default nodes and shards."""
    base = config if config is not None else WorldConfig()
    if (base.nodes, base.shards) != (WorldConfig().nodes, WorldConfig().shards):
        raise InvalidArgument("spec_machine draws steps for the default nodes and shards; "
                              "change sizes and timings in the config, not the layout")
    name = f"Spec_{policy}" + (f"_{getattr(replica, '__name__', 'custom')}" if replica else "")
    return type(name, (SpecMachine,), {
        "world_config": replace(base, policy=policy), "replica": replica,
        "placer": staticmethod(placer) if placer else None, "examples": 0,
        "failures": [], "__module__": __name__})


def run_spec(policy: str = "leader", replica: ReplicaClass | None = None,
             max_examples: int | None = None, steps: int = 30,
             config: WorldConfig | None = None, placer: Placer | None = None,
             shrink: str = "replay", shrink_budget: int = 300) -> SpecReport:
    """Run the specification once (the loaded Hypothesis profile, derandomized so that a
    report is reproducible) and report the first failure and its shrunk steps.

    ``shrink``: ``"replay"`` (default) stops Hypothesis at its first failing example and
    shrinks that example's steps by replaying sub-lists of them (:func:`shrink_steps`,
    at most ``shrink_budget`` replays): the steps are plain data, so this takes seconds,
    where Hypothesis's own shrinker spent minutes per failure on a slow simulation.
    ``"hypothesis"`` uses Hypothesis's shrinker; ``"none"`` reports the steps as found.
    """
    if shrink not in ("replay", "hypothesis", "none"):
        raise InvalidArgument(f"shrink is replay, hypothesis or none; got {shrink!r}")
    machine = spec_machine(policy, replica, config, placer)
    base = settings.default
    phases = [p for p in base.phases if shrink == "hypothesis" or p != Phase.shrink]
    chosen = settings(base, derandomize=True, database=None, deadline=None,
                      stateful_step_count=steps, report_multiple_bugs=False,
                      max_examples=max_examples or base.max_examples, phases=phases,
                      suppress_health_check=list(HealthCheck))
    try:
        with source_free_draws():
            run_state_machine_as_test(machine, settings=chosen)
    except InvariantViolation:
        pass
    else:
        return SpecReport(True, examples=machine.examples,
                          config=asdict(machine.world_config))
    first_exc, first_at, found_steps, cfg = machine.failures[0]
    exc = first_exc
    if shrink == "replay":
        found_steps, exc = shrink_steps(cfg, found_steps, first_exc.invariant, replica,
                                        placer, budget=shrink_budget)
    elif shrink == "hypothesis":  # the last failure is Hypothesis's shrunk example
        exc, _, found_steps, cfg = machine.failures[-1]
    return SpecReport(False, invariant=first_exc.invariant, detail=str(exc)[:500],
                      examples_to_failure=first_at, examples=machine.examples,
                      steps=found_steps, config=asdict(cfg))


def shrink_steps(config: WorldConfig, steps: list[Step], invariant: str,
                 replica: ReplicaClass | None = None, placer: Placer | None = None,
                 budget: int = 300) -> tuple[list[Step], InvariantViolation]:
    """The shortest sub-list of ``steps`` found that still breaks ``invariant`` when
    replayed, and the violation it raises. Delta debugging: one pass over the steps
    tries dropping each chunk of a size in turn, keeping every drop that still fails
    and going on from there (not from the start: the chunks before it were tried); the
    size halves after each pass down to single steps, whose passes repeat until none
    can go, so every step left is needed. At most ``budget`` replays."""
    runs = 0
    last: InvariantViolation | None = None

    def breaks(candidate: list[Step]) -> bool:
        nonlocal runs, last
        runs += 1
        try:
            replay(config, candidate, replica, placer)
        except InvariantViolation as exc:
            if exc.invariant == invariant:
                last = exc
                return True
        return False

    if not breaks(steps):
        raise InvariantViolation(invariant, "the failing steps do not fail when replayed: "
                                 "the run is not deterministic")
    size = -(-len(steps) // 2)
    while len(steps) >= 2 and runs < budget:
        dropped = False
        i = 0
        while i < len(steps) and runs < budget and len(steps) > 1:
            candidate = steps[:i] + steps[i + size:]
            if breaks(candidate):
                steps = candidate
                dropped = True
            else:
                i += size
        if size == 1 and not dropped:
            break
        size = max(1, size // 2)
    return steps, cast(InvariantViolation, last)  # set: breaks(steps) held at least once
