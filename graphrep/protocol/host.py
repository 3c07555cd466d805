"""A node that hosts one replica per shard it holds (one ``VamanaIndex`` each).

The host is a sans-IO process like the replicas it wraps: it decodes each message once,
hands it to the replica of the message's shard, and namespaces what the replicas ask of
the outside world so that they cannot collide:

* timers ``name`` -> ``(shard, name)``;
* durable writes ``key`` -> ``(shard, key)``; on restart each replica gets back the keys
  it wrote (``disk[(shard, key)]`` as ``disk[key]``);
* metrics ``name`` -> ``name@shard``.

Messages for a shard the node does not host are refused like malformed ones: counted
(``protocol_errors``, ``protocol_error:UnknownShard``), and the node keeps running.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from graphrep.errors import PlacementError, ProtocolError, UnknownShard
from graphrep.protocol.messages import decode
from graphrep.protocol.replica import Replica, ReplicaConfig, protocol_error_effects
from graphrep.sansio import CancelTimer, DurableWrite, Metric, SetTimer

__all__ = ["ShardHost"]

ReplicaFactory = Callable[[str, Mapping[Hashable, Any], ReplicaConfig, np.random.Generator],
                          Replica]


class ShardHost:
    """``ShardHost(name, disk, configs, rng_for)``: one replica per config (one per shard).

    ``rng_for(shard)`` gives each replica its random stream; ``replica`` builds a replica
    (``Replica`` by default; a test or a new policy passes its own class).
    """

    def __init__(self, name: str, disk: Mapping[Hashable, Any],
                 configs: Sequence[ReplicaConfig],
                 rng_for: Callable[[int], np.random.Generator],
                 replica: ReplicaFactory = Replica) -> None:
        shards = [c.shard for c in configs]
        if len(set(shards)) != len(shards):
            raise PlacementError(f"node {name!r} was given shard(s) twice: {sorted(shards)}")
        self.name = name
        self.errors = 0
        self.replicas: dict[int, Replica] = {}
        for cfg in sorted(configs, key=lambda c: c.shard):
            mine = {k[1]: v for k, v in disk.items()
                    if isinstance(k, tuple) and len(k) == 2 and k[0] == cfg.shard}
            self.replicas[cfg.shard] = replica(name, mine, cfg, rng_for(cfg.shard))

    @staticmethod
    def _wrap(shard: int, effects: list) -> list:
        out = []
        for e in effects:
            cls = type(e)
            if cls is SetTimer:
                e = SetTimer((shard, e.name), e.delay_ns, e.periodic)
            elif cls is CancelTimer:
                e = CancelTimer((shard, e.name))
            elif cls is DurableWrite:
                e = DurableWrite((shard, e.key), e.value)
            elif cls is Metric:
                e = Metric(f"{e.name}@{shard}", e.value)
            out.append(e)
        return out

    def on_start(self, now: int) -> list:
        out: list = []
        for shard, r in self.replicas.items():
            out += self._wrap(shard, r.on_start(now))
        return out

    def on_timer(self, now: int, name: Hashable) -> list:
        if not (isinstance(name, tuple) and len(name) == 2 and name[0] in self.replicas):
            return []
        shard, inner = name
        return self._wrap(shard, self.replicas[shard].on_timer(now, inner))

    def on_message(self, now: int, src: str, payload: Any, size: int) -> list:
        try:
            msg = decode(payload)
        except ProtocolError as exc:
            self.errors += 1
            return protocol_error_effects(exc)
        return self.on_decoded(now, src, msg)

    def on_decoded(self, now: int, src: str, msg: Any) -> list:
        """Handle a message a driver has already decoded (``messages.decode``)."""
        replica = self.replicas.get(msg.shard)
        if replica is None:
            self.errors += 1
            return protocol_error_effects(UnknownShard(
                f"message for shard {msg.shard}; node {self.name!r} hosts shards "
                f"{sorted(self.replicas)}"))
        return self._wrap(msg.shard, replica.on_decoded(now, src, msg))
