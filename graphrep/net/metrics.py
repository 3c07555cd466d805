"""Prometheus metrics and health endpoints of one live node.

A node whose cluster file gives it a ``metrics`` address serves, over HTTP/1.1 on that
address:

* ``/metrics``: the node's registry in the Prometheus text format
  (``prometheus_client.generate_latest``; OpenMetrics if the scraper asks for it);
* ``/healthz``: ``200 ok`` while the process is up;
* ``/readyz``: ``200 ok`` when every shard on the node has a leader it knows and has
  applied its log to within ``ready_max_lag`` entries (64) of its commit position;
  ``503`` and one line saying why not otherwise (see :meth:`NodeMetrics.readiness`).

**Where it runs: in the node's trio loop**, not in a thread. The state the metrics read
(the replicas, the driver's counters, the links, the store's positions) is mutated by
the node's loop, one callback at a time, without locks. A scrape served by
``prometheus_client``'s own server would run in another thread and read that state
halfway through a callback (the node sets a short GIL switch interval, so that thread
runs often): a leader's follower progress replaced by an election while it is iterated,
a commit position read after a callback beside a term read before it. Served from the
loop (a task in the node's nursery, :class:`MetricsServer`), a scrape runs between two
callbacks and sees one consistent state, at no cost of locking on the replication path.
The price is that a scrape takes its turn in the loop: building the exposition took
0.7 ms for a node of one shard (about 150 samples, the process collector's included);
nothing in it walks the index or the log.

**No double bookkeeping**: :class:`NodeCollector` reads, at scrape time, what the
replicas, the driver, the links and the store already keep (what
:func:`graphrep.net.node.status_of` reports). Four things have no state to read back,
and are kept as they happen:

* ``graphrep_wal_fsync_duration_seconds``: a ``prometheus_client.Histogram`` that the
  store observes into after each commit (``SQLiteStore.observe_commit``). Computing it
  at scrape time from the store's recorded commit durations would lose commits: the
  store keeps the last 32-64k durations only, which a busy node fills between two
  scrapes a minute apart. Observing costs under a microsecond (0.8 us measured) per
  commit, and commits run one at a time, 0.1-2 ms each.
* the term in which each shard's leader was heard, leader changes seen and proposals
  failed: :class:`ObservedHost` (the node's ``ShardHost``) looks at the shard's
  leader, term and role, and a stepping-down leader's waiting writes, around each
  callback of that shard.
* ``graphrep_replication_lag_seconds``: on a leader, per log entry and follower, the
  time from the entry's append to the acknowledgement that moved the follower's
  ``match`` past it (:meth:`ObservedHost.acknowledged`), so that a scrape's bucket
  counts give the lag's distribution over every entry, not the gauge's value at the
  moment of the scrape.
* the HTTP server's own requests and rejections.

Bad HTTP input never reaches the node's state: each connection has one deadline
(``timeout``, 5 s) for the whole exchange, a request head is at most ``max_request``
bytes (8 KiB, else ``431``), garbage is answered ``400`` and closed, at most
``max_connections`` (32) are served at once (more are closed at once), and whatever
goes wrong closes that connection only.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any

import trio
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector

from graphrep.net.driver import counter_totals
from graphrep.net.transport import parse_address
from graphrep.protocol.config import LEADER
from graphrep.protocol.hooks import ReplicaHooks
from graphrep.protocol.host import ShardHost
from graphrep.protocol.messages import Append, Snapshot
from graphrep.protocol.replica import Replica

if TYPE_CHECKING:
    from graphrep.net.driver import NodeDriver

__all__ = ["FSYNC_BUCKETS", "LAG_BUCKETS", "READY_MAX_LAG", "MetricsServer", "NodeCollector",
           "NodeMetrics", "ObservedHost"]

log = logging.getLogger("graphrep.net")

READY_MAX_LAG = 64
"""``/readyz``: how many committed entries a replica may have left to apply."""

FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5)
"""Seconds. A commit here takes 0.1-2 ms (``prometheus_client``'s default buckets start
at 5 ms and would put every commit in the first one)."""
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
"""Client request durations (seconds): a write at majority takes two commits and a round
trip, about 2-10 ms on one machine."""
LAG_BUCKETS = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.007, 0.01, 0.015,
               0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Seconds from a leader appending an entry to a follower acknowledging it: a round trip
and a commit on one machine (1-10 ms), up to seconds for a follower catching up."""
_APPENDED_KEPT = 65536
"""Append times a leader keeps per shard for lag in seconds (older count as the oldest)."""

_EVENTS = (
    ("snapshots", "graphrep_snapshots_taken_total", "Snapshots of the index taken."),
    ("snapshot_installs", "graphrep_snapshots_installed_total",
     "Snapshots received from the leader and installed."),
    ("snapshot_bytes", "graphrep_snapshot_sent_bytes_total",
     "Bytes of snapshot chunks sent to followers."),
    ("apply_failures", "graphrep_apply_failures_total",
     "Committed entries the index refused (the index was rebuilt)."),
    ("anti_entropy_mismatches", "graphrep_anti_entropy_mismatches_total",
     "Anti-entropy comparisons that found a follower's index differing."),
    ("follower_regressions", "graphrep_follower_regressions_total",
     "Followers found to have lost acknowledged entries."),
)
"""Replica metrics (``Metric`` effects, summed by the driver as ``name@shard``) exposed
as counters: (effect name, metric name, help)."""

_FROM_LEADER = (Append, Snapshot)
"""The messages by which a follower hears its leader (``Replica.hear_leader``)."""

_HTTP_PATHS = ("/metrics", "/healthz", "/readyz", "other")
_HTTP_REJECTS = ("malformed", "oversized", "method", "timeout", "busy", "error")
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class ApplyTimer(ReplicaHooks):
    """Replica hooks that time each piece of replication work (applying log entries,
    re-indexing, checking or installing a snapshot: the ``apply`` hook) and hand the
    seconds to ``observe`` once a registry is attached (:class:`NodeMetrics` does)."""

    def __init__(self) -> None:
        self.observe: Callable[[float], None] | None = None

    def apply(self) -> contextlib.AbstractContextManager[object]:
        return _Timed(self) if self.observe is not None else contextlib.nullcontext()


class _Timed:
    __slots__ = ("hooks", "started")

    def __init__(self, hooks: ApplyTimer) -> None:
        self.hooks = hooks

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        observe = self.hooks.observe
        if observe is not None:
            observe(time.perf_counter() - self.started)


class ObservedHost(ShardHost):
    """The node's ``ShardHost``, which also keeps, per shard, what no state holds:

    * ``leader_term``: the term in which this replica last heard from (or was) the
      leader it names. A replica keeps naming its old leader after it has moved to a
      newer term (by a vote request, say) until the new leader's first ``Append``:
      :meth:`leader_of` names a leader only when it is the current term's, as etcd's
      ``has_leader`` does (raft forgets the leader on every change of term);
    * ``leader_changes``: how often :meth:`leader_of` became a node other than the one
      it named before (etcd's ``leader_changes_seen_total``: from none to one counts,
      to none does not);
    * ``proposals_failed``: writes that were waiting for their concern on this replica
      when it stopped leading (their clients retry them; each may or may not survive);
    * ``commit_at_start``: each shard's commit position when the process started, so
      that committed entries count from zero in each process (a counter);
    * ``appended``: on a leader, when recent log positions were appended (position,
      ns), so that a follower's lag can be told in seconds: how long ago the first entry
      it has not acknowledged was appended (:meth:`lag_seconds`), and, once an
      acknowledgement moves a follower's ``match`` on, how long each entry it covers
      took from its append to that acknowledgement (handed to ``observe_lag``, one
      call per entry and follower, when a registry is attached).

    Each callback is observed for its own shard only (a timer's, a message's): a few
    attribute reads."""

    def __init__(self, *args: Any, hooks: ApplyTimer | None = None, **kwargs: Any) -> None:
        self.hooks = hooks or ApplyTimer()
        """Every replica's hooks: the apply timer a registry observes into."""
        hooks_ = self.hooks
        kwargs.setdefault("replica", lambda *a: Replica(*a, hooks=hooks_))
        super().__init__(*args, **kwargs)
        self.leader_term = dict.fromkeys(self.replicas, -1)
        self.leader_changes = dict.fromkeys(self.replicas, 0)
        self.proposals_failed = dict.fromkeys(self.replicas, 0)
        self.commit_at_start = {s: r.commit for s, r in self.replicas.items()}
        self._named = dict.fromkeys(self.replicas, "")
        self.appended: dict[int, collections.deque[tuple[int, int]]] = {
            s: collections.deque(maxlen=_APPENDED_KEPT) for s in self.replicas}
        self.observe_lag: Callable[[int, float, int], None] | None = None
        """``observe_lag(shard, seconds, entries)``: entries of ``shard`` acknowledged
        that long after their append (:class:`NodeMetrics` sets it)."""

    def lag_seconds(self, shard: int, match: int, now: int) -> float:
        """On the leader: seconds since the first entry past ``match`` (a follower's
        acknowledged end) was appended; 0 if it has acknowledged everything. Entries
        older than the ones kept count from the oldest kept (a lower bound)."""
        r = self.replicas[shard]
        if match >= r.log.end:
            return 0.0
        times = self.appended[shard]
        i = bisect.bisect_right(times, (match, 1 << 62)) - 1
        if not times:
            return 0.0
        at = times[max(i, 0)][1]
        return max(now - at, 0) / 1e9

    def acknowledged(self, shard: int, old: int, new: int, now: int) -> None:
        """On the leader: a follower's ``match`` moved from ``old`` to ``new``; hand
        ``observe_lag`` the time from append to now of the entries ``[old, new)``, one
        run of entries appended together at a time. Entries older than the ones kept
        count from the oldest kept (a lower bound)."""
        observe = self.observe_lag
        times = self.appended[shard]
        if observe is None or not times or new <= old:
            return
        # record k: the entries from times[k][0] up to the next record's were appended
        # at times[k][1]
        k = max(bisect.bisect_right(times, (old, 1 << 62)) - 1, 0)
        pos = old
        while pos < new:
            upto = min(times[k + 1][0], new) if k + 1 < len(times) else new
            if upto > pos:
                observe(shard, max(now - times[k][1], 0) / 1e9, upto - pos)
                pos = upto
            k += 1

    def leader_of(self, shard: int) -> str:
        """The leader of ``shard`` in this replica's current term, or ``""``."""
        r = self.replicas[shard]
        return r.leader if self.leader_term[shard] == r.term else ""

    def _observe(self, shard: int, r: Replica, pending: int, src: str = "",
                 msg: Any = None, end: int = -1, now: int = 0) -> None:
        if r.role == LEADER and 0 <= end < r.log.end:
            times = self.appended[shard]
            if times and times[-1][0] >= end:
                times.clear()  # a new term's log: positions restart from here
            times.append((end, now))  # entries [end, log end) appended now
        if r.role == LEADER or (src and r.leader == src and type(msg) in _FROM_LEADER
                                and msg.term == r.term):
            self.leader_term[shard] = r.term
        leader = self.leader_of(shard)
        if leader != self._named[shard]:
            if leader:
                self.leader_changes[shard] += 1
            self._named[shard] = leader
        if pending and r.role != LEADER:
            self.proposals_failed[shard] += pending

    def on_start(self, now: int) -> list:
        out = super().on_start(now)
        for shard, r in self.replicas.items():
            self._observe(shard, r, 0)
        return out

    def on_timer(self, now: int, name: Hashable) -> list:
        r = self.replicas.get(name[0]) if isinstance(name, tuple) and name else None
        if r is None:
            return super().on_timer(now, name)
        pending = len(r.clients.pending) if r.role == LEADER else 0
        end = r.log.end
        out = super().on_timer(now, name)
        self._observe(name[0], r, pending, end=end, now=now)
        return out

    def on_decoded(self, now: int, src: str, msg: Any) -> list:
        shard = getattr(msg, "shard", None)
        r = self.replicas.get(shard) if type(shard) is int else None
        if r is None:
            return super().on_decoded(now, src, msg)
        leading = r.role == LEADER
        pending = len(r.clients.pending) if leading else 0
        progress = r.tracker[src] if leading and src in r.tracker else None
        match, term = (progress.match, r.term) if progress is not None else (0, -1)
        end = r.log.end
        out = super().on_decoded(now, src, msg)
        if progress is not None and r.role == LEADER and r.term == term \
                and r.tracker[src] is progress and progress.match > match:
            self.acknowledged(shard, match, progress.match, now)
        self._observe(shard, r, pending, src, msg, end, now)
        return out


class NodeMetrics:
    """``NodeMetrics(driver)``: the registry of one node (not ``prometheus_client``'s
    global one, so that nodes sharing a process keep apart) and its readiness.

    Registers :class:`NodeCollector`, the fsync histogram (hooked to the driver's
    store), the HTTP server's counters and ``prometheus_client``'s process collector."""

    def __init__(self, driver: NodeDriver, *, ready_max_lag: int = READY_MAX_LAG) -> None:
        self.driver = driver
        self.ready_max_lag = ready_max_lag
        self.stopping = False
        """Set when the node starts its graceful stop: ``/readyz`` answers 503."""
        self.registry = CollectorRegistry()
        self.fsync = Histogram(
            "graphrep_wal_fsync_duration_seconds",
            "Duration of the store's commits (one SQLite transaction, whose COMMIT "
            "fsyncs the write-ahead log), in seconds.",
            buckets=FSYNC_BUCKETS, registry=self.registry)
        driver.store.observe_commit = self.fsync.observe
        self.http_requests = Counter(
            "graphrep_http_requests_total", "HTTP requests answered, by path (other: "
            "any path this node does not serve).", ["path"], registry=self.registry)
        self.http_rejected = Counter(
            "graphrep_http_rejected_total", "HTTP connections closed without serving a "
            "request, by reason.", ["reason"], registry=self.registry)
        self.requests = Histogram(
            "graphrep_client_request_duration_seconds",
            "Client requests from arrival to reply, by op (insert, delete, delta, "
            "search) and the reply's status (ok, not_leader, stale, error, busy, "
            "denied...).", ["op", "status"], buckets=REQUEST_BUCKETS,
            registry=self.registry)
        driver.on_request_done = self._request_done
        self.apply = Histogram(
            "graphrep_apply_duration_seconds", "Replication work of one callback: log "
            "entries applied to the index (a batch at a time), a bulk re-index, a snapshot "
            "checked or installed.", buckets=FSYNC_BUCKETS, registry=self.registry)
        self.lag = Histogram(
            "graphrep_replication_lag_seconds", "On the leader: seconds from appending a "
            "log entry to a follower acknowledging it as durable, one observation per "
            "entry and follower.", ["shard"], buckets=LAG_BUCKETS, registry=self.registry)
        self._hooks_attached = False
        self.attach_hooks()
        for path in _HTTP_PATHS:
            self.http_requests.labels(path)
        for reason in _HTTP_REJECTS:
            self.http_rejected.labels(reason)
        self.registry.register(NodeCollector(self))
        ProcessCollector(registry=self.registry)

    def attach_hooks(self) -> None:
        """Observe the node's apply timer (once its host exists: the driver builds it
        when it starts; :meth:`NodeCollector.collect` calls this again)."""
        host = self.driver.process
        if not self._hooks_attached and isinstance(host, ObservedHost):
            host.hooks.observe = self.apply.observe
            host.observe_lag = self._observe_lag
            for shard in sorted(host.replicas):  # exposed (as zeros) before any entry
                self.lag.labels(str(shard))
            self._hooks_attached = True

    def _observe_lag(self, shard: int, seconds: float, entries: int) -> None:
        child = self.lag.labels(str(shard))
        for _ in range(entries):
            child.observe(seconds)

    def _request_done(self, op: str, status: str, seconds: float) -> None:
        self.requests.labels(op, status).observe(seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry as the scraper asked (``Accept``): the body and its type."""
        encode, content_type = choose_encoder(accept)
        self.attach_hooks()  # before the histograms it names are collected
        return encode(self.registry), content_type

    def readiness(self) -> str:
        """``""`` when the node is ready, else why not (one line).

        Ready: not stopping, and on every shard it hosts, the replica knows a leader
        (itself or the one it follows in its term) and has applied the committed log to
        within ``ready_max_lag`` entries. Under a policy whose followers do not apply
        the log (``snapshot``), a follower's applied position is not checked."""
        if self.stopping:
            return "stopping"
        host = self.driver.process
        if host is None:
            return "starting"
        observed = isinstance(host, ObservedHost)
        for shard, r in sorted(host.replicas.items()):
            if not (host.leader_of(shard) if observed else r.leader):
                return f"shard {shard} knows no leader in term {r.term} ({r.role})"
            behind = r.commit - r.applied
            if behind > self.ready_max_lag and (r.role == LEADER
                                                or r.applier.followers_apply):
                return (f"shard {shard} has applied {r.applied} of {r.commit} committed "
                        f"entries ({behind} behind, more than {self.ready_max_lag})")
        return ""


class NodeCollector:
    """Reads the node's state at scrape time (in the node's loop) into metric families.
    The names follow Prometheus conventions and etcd's where they mean the same."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        m.attach_hooks()
        d = m.driver
        info = GaugeMetricFamily("graphrep_node_info", "This node: its cluster id and "
                                 "name (always 1).", labels=["cluster", "node"])
        info.add_metric([d.cluster, d.name], 1)
        yield info
        yield GaugeMetricFamily("graphrep_ready", "1 when /readyz answers 200.",
                                value=0 if m.readiness() else 1)
        host = d.process
        if host is not None:
            yield from self._shards(d, host)
        yield from self._store(d)
        yield from self._network(d)

    @staticmethod
    def _shards(d: NodeDriver, host: ShardHost) -> Iterator[Metric]:
        def gauge(name: str, text: str, labels: tuple[str, ...] = ("shard",)
                  ) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=list(labels))

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=["shard"])

        is_leader = gauge("graphrep_is_leader", "1 if this replica leads the shard.")
        has_leader = gauge("graphrep_has_leader", "1 if this replica knows the shard's "
                           "leader in its current term (itself or the one it follows).")
        term = gauge("graphrep_term", "The replica's current term.")
        commit = gauge("graphrep_commit_position", "Log positions known committed.")
        applied = gauge("graphrep_applied_position", "Log positions applied to the index.")
        end = gauge("graphrep_log_end_position", "Log positions stored (appended).")
        vectors = gauge("graphrep_index_vectors", "Live vectors in the replica's index.")
        pending = gauge("graphrep_proposals_pending", "Writes waiting for their concern "
                        "on this leader.")
        lag = gauge("graphrep_follower_lag_entries", "On the leader: log entries the "
                    "follower has not acknowledged as durable.", ("shard", "follower"))
        lag_s = gauge("graphrep_follower_lag_seconds", "On the leader: seconds since the "
                      "first entry the follower has not acknowledged was appended (0 when "
                      "it has them all).", ("shard", "follower"))
        logged = CounterMetricFamily(
            "graphrep_logged_bytes_total", "Bytes of the entries this replica logged as "
            "leader, by part: vector, edges and metadata of the edge deltas it computed, "
            "given for deltas clients wrote, op for operations (each entry is then sent to "
            "every follower).", labels=["shard", "part"])
        clock = getattr(d, "now", None)  # the driver's clock: the one callbacks are given
        now = clock() if clock is not None else None
        changes = counter("graphrep_leader_changes_seen_total", "Times this replica saw "
                          "the shard's leader change (to a known leader).")
        committed = counter("graphrep_proposals_committed_total", "Log entries committed "
                            "since this process started.")
        failed = counter("graphrep_proposals_failed_total", "Writes waiting for their "
                         "concern when this replica stopped leading (clients retry them).")
        events = [(key, counter(name, text)) for key, name, text in _EVENTS]
        observed = isinstance(host, ObservedHost)
        errors = host.errors
        for shard, r in sorted(host.replicas.items()):
            s = str(shard)
            leading = r.role == LEADER
            is_leader.add_metric([s], int(leading))
            has_leader.add_metric([s], int(bool(host.leader_of(shard) if observed
                                                else r.leader)))
            term.add_metric([s], r.term)
            commit.add_metric([s], r.commit)
            applied.add_metric([s], r.applied)
            end.add_metric([s], r.end)
            vectors.add_metric([s], len(r.index))
            pending.add_metric([s], len(r.clients.pending) if leading else 0)
            if leading:
                log_end = r.log.end
                for peer in r.peers:
                    if peer in r.tracker:
                        match = r.tracker[peer].match
                        lag.add_metric([s, peer], max(log_end - match, 0))
                        if observed and now is not None:
                            lag_s.add_metric([s, peer], host.lag_seconds(shard, match, now))
            for part, n in sorted(r.applier.logged_bytes.items()):
                logged.add_metric([s, part], n)
            if observed:
                changes.add_metric([s], host.leader_changes[shard])
                committed.add_metric([s], r.commit - host.commit_at_start[shard])
                failed.add_metric([s], host.proposals_failed[shard])
            for key, family in events:
                family.add_metric([s], d.metrics.get(f"{key}@{shard}", 0.0))
            errors += r.errors
        yield from (is_leader, has_leader, term, commit, applied, end, vectors, pending,
                    lag, lag_s, logged)
        if observed:
            yield from (changes, committed, failed)
        yield from (family for _, family in events)
        yield CounterMetricFamily("graphrep_protocol_errors_total", "Messages the "
                                  "replicas refused as malformed, unsupported or for a "
                                  "shard this node does not host.", value=errors)

    @staticmethod
    def _store(d: NodeDriver) -> Iterator[Metric]:
        store = d.store
        yield CounterMetricFamily("graphrep_store_rows_written_total", "Rows (keys) "
                                  "written or deleted by the store's commits.",
                                  value=store.rows_written)
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):  # no -wal file yet
                size += os.stat(f"{store.path}{suffix}").st_size
        yield GaugeMetricFamily("graphrep_store_size_bytes", "Bytes of the store's "
                                "SQLite file and its write-ahead log.", value=size)

    @staticmethod
    def _network(d: NodeDriver) -> Iterator[Metric]:
        sent_bytes = CounterMetricFamily("graphrep_peer_sent_bytes_total", "Bytes written "
                                         "to the connection to a peer.", labels=["peer"])
        sent_frames = CounterMetricFamily("graphrep_peer_sent_frames_total", "Frames "
                                          "written to the connection to a peer.",
                                          labels=["peer"])
        connected = GaugeMetricFamily("graphrep_peer_connected", "1 while this node's "
                                      "link to the peer is connected.", labels=["peer"])
        connects = CounterMetricFamily("graphrep_peer_connects_total", "Connections to "
                                       "the peer made (hello accepted).", labels=["peer"])
        failures = CounterMetricFamily("graphrep_peer_connect_failures_total", "Dials "
                                       "or connections to the peer that failed.",
                                       labels=["peer"])
        up = 0
        for peer, link in sorted(d.links.items()):
            sent_bytes.add_metric([peer], link.bytes_sent)
            sent_frames.add_metric([peer], link.frames_sent)
            connected.add_metric([peer], int(link.connected))
            connects.add_metric([peer], link.connects)
            failures.add_metric([peer], link.failures)
            up += bool(link.connected)
        yield from (sent_bytes, sent_frames, connected, connects, failures)
        yield GaugeMetricFamily("graphrep_peers_connected", "Peers this node's links "
                                "are connected to.", value=up)
        yield GaugeMetricFamily("graphrep_clients_connected", "Clients connected to this "
                                "node (after their hello).", value=len(d.clients))
        traffic = CounterMetricFamily(
            "graphrep_message_bytes_total", "Message bytes (frame bodies) sent and received "
            "over peer and client connections, by message type.", labels=["direction",
                                                                          "type"])
        frames = CounterMetricFamily(
            "graphrep_messages_total", "Messages sent and received over peer and client "
            "connections, by message type.", labels=["direction", "type"])
        for (direction, kind), n in sorted(getattr(d, "traffic", {}).items()):
            traffic.add_metric([direction, kind], n)
            frames.add_metric([direction, kind], d.frames[direction, kind])
        yield from (traffic, frames)
        c = counter_totals(d)
        for key, name, text in (
                ("refused_hellos", "graphrep_refused_hellos_total",
                 "Connections refused at the hello (another version or cluster, an "
                 "unknown role, a node not in the cluster file)."),
                ("refused_handshakes", "graphrep_refused_handshakes_total",
                 "Connections whose proof of the cluster key or token was wrong."),
                ("abandoned_handshakes", "graphrep_abandoned_handshakes_total",
                 "Dialers that left after the challenge (this node's proof did not match "
                 "their secret)."),
                ("tls_refused", "graphrep_tls_refused_total",
                 "Connections closed for a failed TLS handshake (a plaintext peer)."),
                ("denied_writes", "graphrep_denied_writes_total",
                 "Writes refused to a read token."),
                ("busy_replies", "graphrep_busy_replies_total",
                 "Client requests answered busy (requests in flight at a limit)."),
                ("busy_connections", "graphrep_busy_connections_total",
                 "Client connections refused busy (max_connections)."),
                ("expired_requests", "graphrep_expired_requests_total",
                 "Client requests never answered, forgotten after request_expiry."),
                ("residency_refused", "graphrep_residency_refused_total",
                 "A shard's messages refused to or from a node outside its regions."),
                ("refused_by_peer", "graphrep_handshakes_refused_by_peer_total",
                 "Hellos of this node that a peer refused."),
                ("frame_errors", "graphrep_malformed_frames_total",
                 "Connections closed for a malformed, oversized or cut-short frame."),
                ("connection_timeouts", "graphrep_connection_timeouts_total",
                 "Connections closed for silence past their deadline."),
                ("dropped_sends", "graphrep_dropped_sends_total",
                 "Messages dropped because a peer's or client's queue was full."),
                ("loop_stalls", "graphrep_loop_stalls_total",
                 "Callbacks that held the node's loop longer than the stall warning."),
        ):
            yield CounterMetricFamily(name, text, value=c.get(key, 0))
        yield GaugeMetricFamily("graphrep_loop_stall_max_seconds", "The longest callback "
                                "counted as a loop stall, in seconds.",
                                value=c.get("loop_stall_max_ms", 0) / 1e3)


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str, why: str) -> None:
        super().__init__(why)
        self.status, self.reason = status, reason


class MetricsServer:
    """``MetricsServer(metrics, "host:port")``: ``/metrics``, ``/healthz`` and
    ``/readyz`` over HTTP/1.1, one request per connection, served in the trio run that
    calls :meth:`run` (the node's loop). ``port`` is the bound port once started."""

    def __init__(self, metrics: NodeMetrics, address: str, *, timeout: float = 5.0,
                 max_request: int = 8192, max_connections: int = 32) -> None:
        self.metrics = metrics
        self.host, self.port = parse_address(address)
        self.timeout = timeout
        self.max_request = max_request
        self.max_connections = max_connections
        self._active = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Listen (``OSError`` naming the address if it cannot), report started, serve
        until cancelled."""
        try:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve metrics on {self.host}:{self.port}: "
                          f"{exc.strerror or exc}") from None
        self.port = listeners[0].socket.getsockname()[1]
        await trio.serve_listeners(self._connection, listeners, task_status=task_status)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One connection: whatever goes wrong closes it, and only it."""
        rejected = self.metrics.http_rejected
        if self._active >= self.max_connections:
            rejected.labels("busy").inc()
            await trio.aclose_forcefully(stream)
            return
        self._active += 1
        try:
            with trio.move_on_after(self.timeout) as deadline:
                await self._exchange(stream)
            if deadline.cancelled_caught:
                rejected.labels("timeout").inc()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception:  # a bug here must not take the node down with it
            rejected.labels("error").inc()
            log.exception("%s: the metrics endpoint failed a request",
                          self.metrics.driver.name)
        finally:
            self._active -= 1
            await trio.aclose_forcefully(stream)

    async def _exchange(self, stream: trio.SocketStream) -> None:
        try:
            head = await self._read_head(stream)
            if head is None:
                return  # closed before a request: nothing to answer
            method, path, headers = self._parse(head)
        except _BadRequest as exc:
            self.metrics.http_rejected.labels(
                {431: "oversized", 405: "method"}.get(exc.status, "malformed")).inc()
            await self._respond(stream, exc.status, f"{exc.reason}: {exc}\n".encode())
            return
        key = path if path in _HTTP_PATHS else "other"
        self.metrics.http_requests.labels(key).inc()
        status, content_type, body = self._route(path, headers)
        await self._respond(stream, status, body, content_type, head_only=method == "HEAD")

    async def _read_head(self, stream: trio.SocketStream) -> bytes | None:
        """The request line and headers (up to the blank line); None if the client
        closed before sending anything. Garbage is refused at its first line."""
        buf = bytearray()
        checked = False
        while True:
            for sep in (b"\r\n\r\n", b"\n\n"):
                at = buf.find(sep)
                if at >= 0:
                    return bytes(buf[:at])
            if not checked and b"\n" in buf:
                self._request_line(bytes(buf[:buf.index(b"\n")]))
                checked = True
            if len(buf) > self.max_request:
                raise _BadRequest(431, "too large", f"request head over "
                                  f"{self.max_request} bytes")
            chunk = await stream.receive_some(4096)
            if not chunk:
                if not buf:
                    return None
                raise _BadRequest(400, "bad request", "request cut short")
            buf += chunk

    @staticmethod
    def _request_line(line: bytes) -> tuple[str, str]:
        parts = line.rstrip(b"\r").split(b" ")
        if (len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(b"/")
                or parts[2] not in (b"HTTP/1.0", b"HTTP/1.1")):
            raise _BadRequest(400, "bad request", "not an HTTP/1.x request line")
        try:
            return parts[0].decode("ascii"), parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise _BadRequest(400, "bad request", "request target not ASCII") from None

    def _parse(self, head: bytes) -> tuple[str, str, dict[str, str]]:
        lines = head.split(b"\n")
        method, target = self._request_line(lines[0])
        if method not in ("GET", "HEAD"):
            raise _BadRequest(405, "method not allowed", f"{method}: this endpoint "
                              "answers GET and HEAD")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _BadRequest(400, "bad request", "a header line without a colon")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode(
                "latin-1")
        return method, target.split("?", 1)[0], headers

    def _route(self, path: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            body, content_type = self.metrics.exposition(headers.get("accept", ""))
            return 200, content_type, body
        if path == "/healthz":
            return 200, text, b"ok\n"
        if path == "/readyz":
            why = self.metrics.readiness()
            return (503, text, f"not ready: {why}\n".encode()) if why else (200, text,
                                                                           b"ok\n")
        return 404, text, b"not found: this node serves /metrics, /healthz and /readyz\n"

    @staticmethod
    async def _respond(stream: trio.SocketStream, status: int, body: bytes,
                       content_type: str = "text/plain; charset=utf-8",
                       head_only: bool = False) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n")
        if status == 405:
            head += "Allow: GET, HEAD\r\n"
        await stream.send_all(head.encode("latin-1") + b"\r\n" + (b"" if head_only
                                                                   else body))
        await stream.send_eof()
        # read what the client may still be sending before closing: closing a socket
        # with unread input resets the connection, and the reset can destroy the reply
        # before the client has read it (bounded: 64 KiB, half a second)
        with trio.move_on_after(0.5):
            left = 1 << 16
            while left > 0 and (chunk := await stream.receive_some(min(left, 16384))):
                left -= len(chunk)
