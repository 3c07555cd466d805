"""System-level fuzzing (in the spirit of TigerBeetle's VOPR): long seeded runs, every
invariant checked.

Each seed draws a program of steps (writes, searches, faults) from its own random
stream, runs it on a :class:`~graphrep.spec.world.SpecWorld` (every step checks the
run-time invariants), then finishes it (heal, quiesce, end-state invariants). A failure
is reported with its seed and a one-line command that replays exactly that run
(``graphrep fuzz --policy leader --nemesis mixed --steps 200 --seed S``, which also
prints the failing steps). Seeds run in parallel processes with ``jobs`` > 1; results
come back in seed order, so the summary is the same for any number of jobs.

Unlike the Hypothesis machines, the fuzzer does not shrink: it explores far longer
runs (hundreds of steps) than a shrinking search can afford, and a failing seed can be
handed to :func:`graphrep.spec.machine.shrink_steps`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from graphrep.errors import InvalidArgument, InvariantViolation
from graphrep.protocol.config import CONCERNS
from graphrep.spec.registry import ReplicaClass, get_policy
from graphrep.spec.steps import Step
from graphrep.spec.world import SpecWorld, WorldConfig

__all__ = ["NEMESES", "FuzzResult", "draw_steps", "fuzz", "fuzz_seed", "reproduce_command"]

NEMESES = ("none", "partitions", "crashes", "loss", "mixed")
MAX_SEED = 2**63 - 1

_WORKLOAD = {"insert": 6, "delete": 2, "search": 3, "advance": 3}
_FAULTS = {
    "partitions": {"partition": 1, "one_way": 1, "region_split": 1, "isolate_leader": 1,
                   "split_brain": 1, "heal": 3},
    "crashes": {"crash": 1, "kill_leader": 1, "restart": 3},
    "loss": {"drop": 2, "duplicate": 1, "delay": 1, "hold_message": 1, "hold": 1,
             "release": 3},
}


def _weights(nemesis: str) -> dict[str, int]:
    if nemesis not in NEMESES:
        raise InvalidArgument(f"unknown nemesis {nemesis!r}; choose from {NEMESES}")
    w = dict(_WORKLOAD)
    for kind, faults in _FAULTS.items():
        if nemesis in (kind, "mixed"):
            w.update(faults)
    if nemesis == "mixed":
        w.update({"corrupt": 1, "anti_entropy": 1})
    return w


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) \
            or not 0 <= seed <= MAX_SEED:
        raise InvalidArgument(f"a fuzz seed must be an int in [0, {MAX_SEED}], got {seed!r}")
    return int(seed)


def _check_steps(steps: Any) -> None:
    if type(steps) is not int or steps < 1:
        raise InvalidArgument(f"steps must be an int >= 1 (the first step of a program is "
                              f"an advance), got {steps!r}")


def draw_steps(seed: int, steps: int, nemesis: str = "mixed",
               config: WorldConfig | None = None) -> tuple[WorldConfig, list[Step]]:
    """The world config and the program of ``steps`` steps that ``seed`` stands for."""
    seed = _check_seed(seed)
    _check_steps(steps)
    cfg = config if config is not None else WorldConfig()
    rng = np.random.default_rng([seed, 7])
    cfg = replace(cfg, seed=seed, sync=("always", "tick")[int(rng.integers(2))])
    weights = _weights(nemesis)
    kinds = sorted(weights)
    p = np.array([weights[k] for k in kinds], dtype=np.float64)
    p /= p.sum()
    nodes = [n for n, _ in cfg.nodes]
    shards = [s for s, _ in cfg.shards]
    regions_n = cfg.replication

    def one(kind: str) -> Step:
        shard = shards[int(rng.integers(len(shards)))]
        node = nodes[int(rng.integers(len(nodes)))]
        if kind == "insert":
            return Step(kind, shard=shard, replica=int(rng.integers(regions_n)),
                        concern=CONCERNS[int(rng.integers(3))],
                        count=int(rng.integers(1, 9)), read=int(rng.integers(-1, regions_n)))
        if kind == "delete":
            return Step(kind, shard=shard, replica=int(rng.integers(regions_n)),
                        concern=CONCERNS[int(rng.integers(3))], pick=int(rng.integers(64)))
        if kind == "search":
            return Step(kind, shard=shard, replica=int(rng.integers(regions_n)),
                        pick=int(rng.integers(64)))
        if kind == "advance":
            return Step(kind, ms=int(rng.integers(1, 400)))
        if kind == "partition":
            order = [nodes[i] for i in rng.permutation(len(nodes))]
            cut = int(rng.integers(1, len(order)))
            return Step(kind, groups=(tuple(sorted(order[:cut])), tuple(sorted(order[cut:]))))
        if kind == "one_way":
            a, b = (nodes[i] for i in rng.permutation(len(nodes))[:2])
            return Step(kind, sources=(a,), destinations=(b,))
        if kind in ("region_split", "heal"):
            return Step(kind)
        if kind in ("isolate_leader", "kill_leader", "anti_entropy"):
            return Step(kind, shard=shard)
        if kind == "split_brain":
            return Step(kind, shard=shard, count=int(rng.integers(1, 5)))
        if kind in ("crash", "restart"):
            return Step(kind, node=node)
        if kind in ("drop", "duplicate", "delay", "hold_message"):
            args: dict[str, Any] = {"pick": int(rng.integers(256))}
            if kind in ("duplicate", "delay"):
                args["ms"] = int(rng.integers(1, 200))
            return Step(kind, **args)
        if kind in ("hold", "release"):
            a, b = (nodes[i] for i in rng.permutation(len(nodes))[:2])
            return Step(kind, src=a, dst=b)
        if kind == "corrupt":
            return Step(kind, shard=shard, node=node, pick=int(rng.integers(64)))
        raise InvalidArgument(f"no generator for step {kind!r}")

    program = [Step("advance", ms=300)]
    program += [one(kinds[int(i)]) for i in rng.choice(len(kinds), size=steps - 1, p=p)]
    return cfg, program


@dataclass(frozen=True)
class FuzzResult:
    seed: int
    ok: bool
    invariant: str | None
    detail: str
    failed_at_step: int | None
    steps: int
    acks: int


def fuzz_seed(seed: int, policy: str = "leader", steps: int = 200, nemesis: str = "mixed",
              replica: ReplicaClass | None = None) -> FuzzResult:
    """Run one seed's program and check every invariant."""
    cfg, program = draw_steps(seed, steps, nemesis, WorldConfig(policy=policy))
    world = SpecWorld(cfg, replica)
    try:
        for step in program:
            world.do(step)
        world.finish()
    except InvariantViolation as exc:
        return FuzzResult(seed, False, exc.invariant, str(exc)[:400], len(world.steps),
                          len(world.steps), len(world.client.acks))
    return FuzzResult(seed, True, None, "", None, len(world.steps), len(world.client.acks))


def reproduce_command(policy: str, nemesis: str, steps: int, seed: int) -> str:
    return f"graphrep fuzz --policy {policy} --nemesis {nemesis} --steps {steps} --seed {seed}"


def _run_one(args: tuple) -> FuzzResult:
    return fuzz_seed(*args)


def fuzz(seeds: range | list[int], policy: str = "leader", steps: int = 200,
         nemesis: str = "mixed", jobs: int = 1, replica: ReplicaClass | None = None,
         progress: Callable[[Iterator[FuzzResult], int], Iterator[FuzzResult]] | None = None,
         ) -> dict[str, Any]:
    """Fuzz every seed in ``seeds``; returns the JSON-able summary. ``progress`` wraps
    the result iterator (a tqdm bar, say)."""
    get_policy(policy)
    _weights(nemesis)
    if type(jobs) is not int or jobs < 1:
        raise InvalidArgument(f"jobs must be an int >= 1, got {jobs!r}")
    _check_steps(steps)
    seeds = [_check_seed(s) for s in seeds]
    t0 = time.perf_counter()
    work = [(s, policy, steps, nemesis, replica) for s in seeds]
    if jobs == 1:
        results: Iterator[FuzzResult] = map(_run_one, work)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=jobs)
        results = pool.map(_run_one, work, chunksize=max(1, min(8, len(work) // (4 * jobs))))
    try:
        done = list(progress(results, len(work)) if progress else results)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    seconds = time.perf_counter() - t0
    failures = [r for r in done if not r.ok]
    return {
        "policy": policy, "nemesis": nemesis, "steps": steps, "seeds": len(done),
        "failures": len(failures),
        "failed": [{"seed": r.seed, "invariant": r.invariant, "detail": r.detail,
                    "failed_at_step": r.failed_at_step,
                    "reproduce": reproduce_command(policy, nemesis, steps, r.seed)}
                   for r in failures],
        "acks": int(sum(r.acks for r in done)),
        "seconds": round(seconds, 2),
        "seeds_per_second": round(len(done) / seconds, 2) if seconds > 0 else None,
    }
