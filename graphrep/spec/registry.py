"""The policy registry: register a replication policy once, get the whole specification.

The specification (the stateful machines of :mod:`graphrep.spec.machine`, the fuzzer
of :mod:`graphrep.spec.fuzz`) runs every registered policy. A policy is a replica
class (the sans-IO process of one shard's replica: ``cls(name, disk, config, rng)``
with the attributes a :class:`~graphrep.protocol.replica.Replica` has) plus what it
promises. Promises matter: ``replay`` (today's vector databases) does not promise that
replicas converge to the same graph, so the specification measures its drift instead of
failing on it: it skips the ``convergence`` and ``identical_results`` invariants for a
policy registered with ``converges=False`` and bounds its recall instead.

A researcher adding a policy writes::

    register_policy(PolicySpec("mine", replica=MyReplica, config={"policy": "leader"}))

and the test suite (tests/spec) picks it up: no test is copied.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphrep.errors import InvalidArgument
from graphrep.protocol.replica import Replica, ReplicaConfig

__all__ = ["PolicySpec", "get_policy", "policy_names", "register_policy", "unregister_policy"]

ReplicaClass = Callable[[str, Mapping[Hashable, Any], ReplicaConfig, np.random.Generator],
                        Replica]


@dataclass(frozen=True)
class PolicySpec:
    """A replication policy as the specification runs it.

    * ``replica``: builds one shard's replica.
    * ``config``: ``ReplicaConfig`` fields this policy sets (``policy`` at least, for the
      built-in replica).
    * ``converges``: replicas end with equal digests and identical search results.
    * ``recall_eps``: a replica's recall@10 may trail a single writer's by this much.
    * ``repairs_damage``: it finds and repairs a graph damaged behind its back
      (anti-entropy); the ``corrupt`` step is a no-op for a policy that does not claim to.
    """

    name: str
    replica: ReplicaClass = Replica
    config: Mapping[str, Any] = field(default_factory=dict)
    converges: bool = True
    recall_eps: float = 0.05
    repairs_damage: bool = True
    description: str = ""


_REGISTRY: dict[str, PolicySpec] = {}


def register_policy(spec: PolicySpec, replace: bool = False) -> PolicySpec:
    """Add a policy (``replace=True`` to overwrite one of the same name)."""
    if not isinstance(spec, PolicySpec):
        raise InvalidArgument(f"register a PolicySpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise InvalidArgument(f"policy {spec.name!r} is registered already; pass "
                              "replace=True to overwrite it")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_policy(name: str) -> PolicySpec:
    """Remove a registered policy (one tried out for a while); returns it."""
    get_policy(name)  # raises for an unknown policy
    return _REGISTRY.pop(name)


def policy_names() -> list[str]:
    """The registered policies, in registration order."""
    return list(_REGISTRY)


def get_policy(name: str) -> PolicySpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidArgument(f"unknown policy {name!r}; registered: "
                              f"{', '.join(_REGISTRY)}") from None


register_policy(PolicySpec(
    "leader", config={"policy": "leader"},
    description="the leader ships edge deltas; followers apply them"))
register_policy(PolicySpec(
    "replay", config={"policy": "replay"}, converges=False, recall_eps=0.1,
    repairs_damage=False,
    description="every replica runs every insert (vector databases today): drift is "
                "measured, not promised away"))
register_policy(PolicySpec(
    "snapshot", config={"policy": "snapshot"},
    description="the leader ships its whole index periodically"))
register_policy(PolicySpec(
    "crdt", config={"policy": "crdt"}, repairs_damage=False,
    description="active-active: entries carry candidate additions merged into "
                "grow-only capped pools; lists are canonical prunes of them"))
register_policy(PolicySpec(
    "lww", config={"policy": "lww"}, converges=False, repairs_damage=False,
    description="active-active baseline: full records merged last-writer-wins per node "
                "(what it loses is measured, not promised away)"))
register_policy(PolicySpec(
    "ordered", config={"policy": "ordered"}, repairs_damage=False,
    description="active-active baseline: every replica runs every write in one global "
                "timestamp order, once no earlier write can arrive"))
