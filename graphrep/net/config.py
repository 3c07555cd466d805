"""A live cluster, described by one TOML file.

Example (``graphrep cluster up`` writes one like it)::

    cluster = "graphrep-local"      # a node refuses peers and clients of another id
    data_dir = "data"               # relative to this file; one directory per node
    replication = 3
    policy = "leader"
    concern = "majority"            # the clients' default write concern

    [index]
    dim = 32
    metric = "l2"
    R = 32
    L = 64
    alpha = 1.2

    [protocol]                      # optional ReplicaConfig fields; *_ms in milliseconds
    tick_ms = 50
    election_timeout_ms = [1000, 2000]

    [limits]                        # optional graphrep.net.driver.DriverConfig fields
    max_frame_bytes = 67108864

    [nodes]
    n1 = { address = "127.0.0.1:7001", region = "local", metrics = "127.0.0.1:9101" }
    n2 = { address = "127.0.0.1:7002", region = "local", metrics = "127.0.0.1:9102" }
    n3 = { address = "127.0.0.1:7003", region = "local" }   # no metrics endpoint

    [shards]                        # shard -> the regions it may live in
    0 = ["local"]

A node's optional ``metrics`` address is where it serves ``/metrics``, ``/healthz``
and ``/readyz`` over HTTP (:mod:`graphrep.net.metrics`); without one it serves none.

Shards are numbered ``0 .. S-1``; an id belongs to shard ``id % S`` (as in the
simulated cluster). Which nodes hold a shard is decided by
:func:`graphrep.protocol.placement.place`, from the file alone, so every node and every
client computes the same placement.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphrep.errors import ConfigError, PlacementError
from graphrep.net.driver import DriverConfig
from graphrep.net.handshake import SECRET_FILES, Keys, read_secret
from graphrep.net.transport import TCPTransport, TLSFiles, parse_address
from graphrep.protocol.config import CONCERNS, POLICIES, ReplicaConfig
from graphrep.protocol.placement import ShardPlacement, place
from graphrep.sansio import MS

__all__ = ["ClusterFile", "NodeSpec"]

_FIXED = {"replicas", "dim", "shard", "policy", "metric", "R", "L", "alpha"}
_PROTOCOL_FIELDS = {f.name for f in dataclasses.fields(ReplicaConfig)} - _FIXED
_LIMITS = {"max_frame_bytes", "inputs", "peer_queue", "client_queue", "hello_timeout",
           "idle_timeout", "frame_timeout", "stall_warning", "max_connections",
           "max_requests_per_connection", "max_requests", "busy_retry_ms",
           "request_expiry"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    address: str
    region: str = "local"
    metrics: str = ""
    """``host:port`` of the node's HTTP endpoints (``/metrics``, ``/healthz``,
    ``/readyz``); empty: none."""

    @property
    def metrics_url(self) -> str | None:
        """``http://host:port/metrics``, or None without a metrics address."""
        return f"http://{self.metrics}/metrics" if self.metrics else None


@dataclass(frozen=True)
class ClusterFile:
    """A parsed cluster file; :meth:`load` reads one, :meth:`dump` writes one."""

    cluster: str
    nodes: dict[str, NodeSpec]
    shards: dict[int, tuple[str, ...]]
    dim: int
    data_dir: Path
    replication: int = 3
    policy: str = "leader"
    concern: str = "majority"
    metric: str = "l2"
    R: int = 32
    L: int = 64
    alpha: float = 1.2
    protocol: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    security: dict[str, Path] = field(default_factory=dict)
    """``[security]``: the secret files (:data:`graphrep.net.handshake.SECRET_FILES`),
    relative to the cluster file; empty: no secrets, connections are not authenticated."""
    delays: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    """``[delays]``: one-way delay and jitter in ms between two regions, both ways
    (``eu.us = [40, 2]``): a node holds its frames to a peer in another region that long
    (:meth:`delay_between`), so a multi-region cluster runs on one machine."""
    tls: dict[str, Path] = field(default_factory=dict)
    """``[tls]``: ``ca``, ``cert`` and ``key`` files (relative to the cluster file);
    empty: connections are plaintext (see :class:`graphrep.net.transport.TLSFiles`)."""
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ConfigError("[nodes] is empty: a cluster needs at least one node")
        for spec in self.nodes.values():
            parse_address(spec.address)
            if spec.metrics:
                _, port = parse_address(spec.metrics)
                if spec.metrics == spec.address and port:
                    raise ConfigError(f"node {spec.name!r} has its metrics on its own "
                                      f"address {spec.address}; give it another port")
        if sorted(self.shards) != list(range(len(self.shards))):
            raise ConfigError(f"shards are numbered 0..S-1, got {sorted(self.shards)}")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy {self.policy!r} is not one of {POLICIES}")
        if self.concern not in CONCERNS:
            raise ConfigError(f"concern {self.concern!r} is not one of {CONCERNS}")
        if type(self.dim) is not int or self.dim < 1:
            raise ConfigError(f"[index] dim must be an int >= 1, got {self.dim!r}")
        unknown = sorted(set(self.protocol) - _PROTOCOL_FIELDS)
        if unknown:
            raise ConfigError(f"[protocol] has unknown keys {unknown}; known: "
                              f"{sorted(_PROTOCOL_FIELDS)} (times as *_ms)")
        unknown = sorted(set(self.security) - set(SECRET_FILES))
        if unknown:
            raise ConfigError(f"[security] has unknown keys {unknown}; known: "
                              f"{sorted(SECRET_FILES)}")
        regions = {spec.region for spec in self.nodes.values()}
        for a, row in self.delays.items():
            for b, value in (row.items() if isinstance(row, dict) else [(None, row)]):
                if b is None or a not in regions or b not in regions or a == b:
                    raise ConfigError(f"[delays] {a}.{b}: a delay is between two regions of "
                                      f"the nodes ({sorted(regions)}), as eu.us = [40, 2]")
                if not (isinstance(value, list) and len(value) == 2
                        and all(isinstance(v, int | float) and v >= 0 for v in value)):
                    raise ConfigError(f"[delays] {a}.{b} = {value!r}: it is [delay ms, "
                                      "jitter ms], two numbers >= 0")
        if self.tls and sorted(self.tls) != ["ca", "cert", "key"]:
            raise ConfigError(f"[tls] names {sorted(self.tls)}; it names ca, cert and key "
                              "files, all three")
        unknown = sorted(set(self.limits) - _LIMITS)
        if unknown:
            raise ConfigError(f"[limits] has unknown keys {unknown}; known: {sorted(_LIMITS)}")
        try:
            self.placement()
            self.replica_configs(next(iter(self.nodes)))
        except PlacementError as exc:
            raise ConfigError(f"the cluster file's placement fails: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"[protocol] or [index] has a bad value: {exc}") from None

    # ------------------------------------------------------------------ reading

    @classmethod
    def load(cls, path: str | Path) -> ClusterFile:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no cluster file at {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        try:
            index = dict(raw.get("index", {}))
            protocol = {}
            for key, value in dict(raw.get("protocol", {})).items():
                if key.endswith("_ms"):
                    key = key[:-3] + "_ns"
                    value = (tuple(int(v * MS) for v in value) if isinstance(value, list)
                             else int(value * MS))
                protocol[key] = value
            nodes = {name: NodeSpec(name, str(spec["address"]),
                                    str(spec.get("region", "local")),
                                    str(spec.get("metrics", "")))
                     for name, spec in dict(raw["nodes"]).items()}
            shards = {int(s): tuple(str(r) for r in regions)
                      for s, regions in dict(raw.get("shards", {"0": ["local"]})).items()}
            data_dir = Path(raw.get("data_dir", "data"))
            if not data_dir.is_absolute():
                data_dir = path.parent / data_dir
            security = {str(k): path.parent / str(v)
                        for k, v in dict(raw.get("security", {})).items()}
            tls = {str(k): path.parent / str(v) for k, v in dict(raw.get("tls", {})).items()}
            delays = {str(a): dict(row) if isinstance(row, dict) else row
                      for a, row in dict(raw.get("delays", {})).items()}
            return cls(cluster=str(raw["cluster"]), nodes=nodes, shards=shards,
                       dim=index.get("dim", 0), data_dir=data_dir,
                       replication=int(raw.get("replication", min(3, len(nodes)))),
                       policy=str(raw.get("policy", "leader")),
                       concern=str(raw.get("concern", "majority")),
                       metric=str(index.get("metric", "l2")), R=int(index.get("R", 32)),
                       L=int(index.get("L", 64)), alpha=float(index.get("alpha", 1.2)),
                       protocol=protocol, limits=dict(raw.get("limits", {})),
                       security=security, tls=tls, delays=delays, path=path)
        except KeyError as exc:
            raise ConfigError(f"{path} misses the key {exc.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path} has a bad value: {exc}") from None

    def dump(self, path: str | Path) -> Path:
        """Write this cluster as a TOML file (``data_dir`` relative to it when inside)."""
        path = Path(path)
        try:
            data_dir = self.data_dir.resolve().relative_to(path.parent.resolve())
        except ValueError:
            data_dir = self.data_dir.resolve()
        lines = [f'cluster = "{self.cluster}"', f'data_dir = "{data_dir}"',
                 f"replication = {self.replication}", f'policy = "{self.policy}"',
                 f'concern = "{self.concern}"', "", "[index]", f"dim = {self.dim}",
                 f'metric = "{self.metric}"', f"R = {self.R}", f"L = {self.L}",
                 f"alpha = {self.alpha}", "", "[protocol]"]
        for key, value in sorted(self.protocol.items()):
            if key.endswith("_ns"):
                key = key[:-3] + "_ms"
                value = [v / MS for v in value] if isinstance(value, tuple) else value / MS
            lines.append(f"{key} = {_toml(value)}")
        lines += ["", "[limits]"]
        lines += [f"{k} = {_toml(v)}" for k, v in sorted(self.limits.items())]
        if self.security:
            lines += ["", "[security]                      # secret files, mode 600"]
            lines += [f'{k} = "{_relative(v, path.parent)}"'
                      for k, v in sorted(self.security.items())]
        if self.delays:
            lines += ["", "[delays]                        # one-way, ms: [delay, jitter]"]
            lines += [f"{a}.{b} = {_toml(list(v))}" for a, row in sorted(self.delays.items())
                      for b, v in sorted(row.items())]
        if self.tls:
            lines += ["", "[tls]                           # CA, certificate, key (mode 600)"]
            lines += [f'{k} = "{_relative(v, path.parent)}"' for k, v in sorted(self.tls.items())]
        lines += ["", "[nodes]"]
        lines += [f'{n} = {{ address = "{s.address}", region = "{s.region}"'
                  + (f', metrics = "{s.metrics}"' if s.metrics else "") + " }"
                  for n, s in sorted(self.nodes.items())]
        lines += ["", "[shards]"]
        lines += [f"{s} = {_toml(list(r))}" for s, r in sorted(self.shards.items())]
        path.write_text("\n".join(lines) + "\n")
        return path

    # ------------------------------------------------------------------ derived

    def keys(self) -> Keys:
        """The secrets a node of this cluster holds (reads the secret files)."""
        return Keys.load(self.security)

    def delay_between(self, a: str, b: str) -> tuple[float, float] | None:
        """The one-way (delay, jitter) in seconds from region ``a`` to ``b`` (None: none)."""
        value = self.delays.get(a, {}).get(b) or self.delays.get(b, {}).get(a)
        return None if not value else (value[0] / 1e3, value[1] / 1e3)

    def region_of(self, node: str) -> str:
        return self.nodes[node].region

    def tls_files(self) -> TLSFiles | None:
        """The ``[tls]`` files, or None for plaintext connections."""
        return TLSFiles(self.tls["ca"], self.tls["cert"], self.tls["key"]) if self.tls else None

    def transport(self) -> TCPTransport:
        """A TCP transport to this cluster's nodes (TLS if ``[tls]`` names files)."""
        return TCPTransport({n: s.address for n, s in self.nodes.items()},
                            tls=self.tls_files())

    def client_token(self) -> str:
        """The write token the cluster file names ("" when it names no secrets)."""
        path = self.security.get("write_token")
        return "" if path is None else read_secret(path)

    def placement(self) -> list[ShardPlacement]:
        return place({n: s.region for n, s in self.nodes.items()},
                     {s: list(r) for s, r in self.shards.items()}, self.replication)

    def shard_of(self, id_: int) -> int:
        return int(id_) % len(self.shards)

    def replicas_of(self, shard: int) -> tuple[str, ...]:
        return self.placement()[shard].replicas

    def replica_configs(self, node: str) -> list[ReplicaConfig]:
        """The configs of the replicas ``node`` hosts (one per shard placed on it)."""
        return [ReplicaConfig(replicas=p.replicas, dim=self.dim, shard=p.shard,
                              policy=self.policy, metric=self.metric, R=self.R, L=self.L,
                              alpha=self.alpha, **self.protocol)
                for p in self.placement() if node in p.replicas]

    def driver_config(self) -> DriverConfig:
        return DriverConfig(**self.limits)

    def node_dir(self, node: str) -> Path:
        return self.data_dir / node


def _relative(p: Path, base: Path) -> Path:
    try:
        return p.resolve().relative_to(base.resolve())
    except ValueError:
        return p.resolve()


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
