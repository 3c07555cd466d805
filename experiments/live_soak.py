"""A bounded soak of a live 3-process cluster: steady load, a node SIGKILLed and restarted
every ``--kill-every`` seconds, for ``--duration`` seconds; then every promise checked.

What runs (one process drives it all; the nodes are ``graphrep.net.local`` processes):

- three nodes in two emulated regions (n1 and n3 in ``eu``, n2 in ``us``; one-way delay
  20 +- 2 ms between them), fsync on, authentication on (``cluster up`` writes the
  secrets), one shard replicated 3 times, writes at ``majority``;
- a base index of ``--base`` vectors written through the client, then the maximum write
  rate measured for ``--probe-seconds`` with ``--probe-concurrency`` writes outstanding
  (the soak's own mix: inserts, deletes, and a search after a write with probability
  ``--search-ratio``, so that 0.7 x the maximum leaves the searches room too);
- the soak: writes on a fixed schedule at ``--load`` x that maximum (open loop: each
  write starts at its scheduled instant, at most ``--max-outstanding`` in flight; how
  late each one started is recorded), a fraction ``--delete-frac`` of them deletes of
  inserts acknowledged at least a second earlier; searches at ``--search-ratio`` x the
  write rate, alternating ``leader`` reads that check read-your-writes (the exact vector
  of the latest acknowledged insert must come back in the top 10, that of the latest
  acknowledged delete must not; a miss is searched again with k=100 to tell a graph
  search that missed the point from a stale read) and ``nearest`` reads of fresh
  queries;
- chaos: every ``--kill-every`` seconds a random node is SIGKILLed, left down
  ``--down`` seconds, and started again (until it answers and its shard has a leader);
- a sampler thread: every 2 s each node's RSS and open descriptors (``/proc``, the pid
  from ``DIR/<node>.pid``: it changes at each restart) and its ``/metrics`` (a node that
  is down has no sample).

What it reports (``--out``: ``live_soak.json``, ``live_soak.png``; the LAST line of
stdout is one JSON object with the summary and the goals' verdicts; progress on stderr):

- acknowledged writes lost (goal 0): after the cluster converges, every acknowledged
  insert (not deleted since) on every node, no acknowledged delete, no id never written;
  equal digests; top-10 agreement of searches pinned to each node;
- read-your-writes violations (goal 0);
- write latency p99 per minute over the writes sent outside the failover windows (from a
  kill to ``max(kill + 5 s, restart + --settle s)``) against the steady state (the p99
  of every write sent outside them): goal, every minute within 2x;
- per node incarnation: RSS and open descriptors first/last/max, against the growth of
  the index (slots x (dim x 4 + R x 4 + 33) bytes: vectors, neighbour lists, per-slot
  arrays; deletes are tombstones and keep their slot): goal, no growth beyond it;
  the excess RSS of the oldest process over the youngest at the end (a restarted node
  rebuilds its state from its store, so the difference is what a long life accumulated)
  and each process's CPU;
- follower lag over time (``graphrep_follower_lag_entries`` on the leader).

The write latency also depends on where the leader is: in ``eu`` a majority is the
leader and its ``eu`` peer, in ``us`` every commit crosses the 20 ms link (both ways).
The summary gives the steady state per leader region and a second p99 verdict against
the steady state of each minute's leader region.

Examples::

    .venv/bin/python experiments/live_soak.py --quick
    .venv/bin/python experiments/live_soak.py --keep /tmp/soak-cluster   # 10 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import trio
from prometheus_client.parser import text_string_to_metric_families

from graphrep.errors import GraphrepError
from graphrep.net import local
from graphrep.net.client import Client
from graphrep.net.config import ClusterFile
from graphrep.net.local import LocalCluster
from graphrep.net.node import warm_up

REGIONS = ["eu", "us"]
DELAYS = {"eu": {"us": [20, 2]}}
PROBLEM = re.compile(r"Traceback|CRITICAL|ERROR|Exception")
SCRAPE_EVERY = 2.0
KEEP_METRICS = {
    "graphrep_ready", "graphrep_is_leader", "graphrep_term", "graphrep_commit_position",
    "graphrep_applied_position", "graphrep_log_end_position", "graphrep_index_vectors",
    "graphrep_proposals_pending", "graphrep_follower_lag_entries",
    "graphrep_leader_changes_seen_total", "graphrep_proposals_failed_total",
    "graphrep_snapshots_taken_total", "graphrep_snapshots_installed_total",
    "graphrep_store_size_bytes", "graphrep_busy_replies_total",
    "graphrep_dropped_sends_total", "graphrep_loop_stalls_total",
    "graphrep_loop_stall_max_seconds", "graphrep_wal_fsync_duration_seconds_sum",
    "graphrep_wal_fsync_duration_seconds_count", "graphrep_clients_connected",
    "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total",
    "graphrep_snapshot_sent_bytes_total", "graphrep_peer_sent_bytes_total",
    "graphrep_peer_connected", "graphrep_expired_requests_total",
}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: Any, q: float) -> float | None:
    values = np.asarray(values, dtype=float)
    return round(float(np.percentile(values, q)), 2) if len(values) else None


# ---------------------------------------------------------------------- vectors


class Vectors:
    """A Gaussian mixture whose points are a function of their id (nothing stored)."""

    def __init__(self, dim: int, seed: int, clusters: int = 64) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed = dim, seed
        self.centres = rng.normal(0.0, 3.0, (clusters, dim)).astype(np.float32)

    def __call__(self, id_: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 1, id_))
        return (self.centres[rng.integers(len(self.centres))]
                + rng.standard_normal(self.dim)).astype(np.float32)

    def query(self, rng: np.random.Generator) -> np.ndarray:
        return (self.centres[rng.integers(len(self.centres))]
                + rng.standard_normal(self.dim)).astype(np.float32)


# ---------------------------------------------------------------------- sampling


def _proc(pid: int) -> dict[str, Any]:
    """``rss`` (VmRSS), ``anon`` (RssAnon), ``file`` (RssFile) in bytes, ``fds`` (open
    descriptors) and ``cpu`` (user + system seconds) of ``pid``; what could not be read
    is missing."""
    out: dict[str, Any] = {}
    keys = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = keys.get(line.split(maxsplit=1)[0] if line else "")
            if key:
                out[key] = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError):
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def scrape(address: str, timeout: float = 1.0) -> dict[str, float] | None:
    """The kept samples of a node's /metrics (``name``, or ``name{follower}`` /
    ``name{peer}`` for those labelled so), or None."""
    try:
        with _DIRECT.open(f"http://{address}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
    except OSError:
        return None
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in KEEP_METRICS:
                extra = s.labels.get("follower") or s.labels.get("peer") or ""
                out[f"{s.name}{{{extra}}}" if extra else s.name] = s.value
    return out


class Sampler(threading.Thread):
    """Every ``period`` s, per node: pid, RSS, descriptors, the kept metrics."""

    def __init__(self, directory: Path, cfg: ClusterFile, period: float = SCRAPE_EVERY
                 ) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.dir, self.cfg, self.period = directory, cfg, period
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.time()
            for node in sorted(self.cfg.nodes):
                row: dict[str, Any] = {"t": round(time.time(), 3), "node": node}
                pid = local.pid_of(self.dir, node)
                if pid is not None:
                    row["pid"] = pid
                    row.update(_proc(pid))
                    row["m"] = scrape(self.cfg.nodes[node].metrics)
                self.samples.append(row)
            me: dict[str, Any] = {"t": round(time.time(), 3), "node": "client",
                                  "pid": os.getpid()}
            me.update(_proc(os.getpid()))
            self.samples.append(me)
            self.halt.wait(max(0.0, self.period - (time.time() - t)))

    def latest_leader(self) -> str | None:
        for row in reversed(self.samples[-6:]):
            if (row.get("m") or {}).get("graphrep_is_leader") == 1:
                return row["node"]
        return None


# ---------------------------------------------------------------------- the load



async def _paced(rate: float, t0: float, end: float, limit: int,
                 what: Callable[[int], tuple],
                 job: Callable[..., Awaitable[None]]) -> None:
    """``job(*what(i), at)`` for i = 0, 1, ... at the instants ``at = t0 + i / rate``
    before ``end``: ``what(i)`` decided in order as each instant comes, the job started
    then, at most ``limit`` running (past that the schedule waits)."""
    room = trio.Semaphore(limit)

    async def one(args: tuple, at: float) -> None:
        try:
            await job(*args, at)
        finally:
            room.release()

    async with trio.open_nursery() as nursery:
        i = 0
        while (at := t0 + i / rate) < end:
            await trio.sleep(max(0.0, at - time.time()))
            await room.acquire()
            nursery.start_soon(one, what(i), at)
            i += 1

class Load:
    """Writes (inserts of fresh ids, deletes of ids acknowledged > 1 s ago) and searches
    through one client; the client's history has every write."""

    def __init__(self, client: Client, vectors: Vectors, args: argparse.Namespace) -> None:
        self.client, self.vec, self.args = client, vectors, args
        self.delete_frac = args.delete_frac
        self.rng = random.Random(args.seed)
        self.qrng = np.random.default_rng(args.seed + 1)
        self.next_id = 0
        self.acked_at: dict[int, float] = {}  # acknowledged inserts not chosen for delete
        self.latest_insert: tuple[int, float] | None = None
        self.latest_delete: tuple[int, float] | None = None
        self.outstanding = 0
        self.scheduled: dict[tuple[str, int], float] = {}
        self.errors: list[str] = []
        self.failed = 0
        self.searches: list[dict[str, Any]] = []
        self.search_out = 0

    def next_op(self) -> tuple[str, int]:
        if self.rng.random() < self.delete_frac and self.next_id:
            now = time.time()
            for _ in range(20):  # most ids qualify: rejection sampling is cheap
                victim = self.rng.randrange(self.next_id)
                at = self.acked_at.get(victim)
                if at is not None and now - at > 1.0:
                    del self.acked_at[victim]
                    return "delete", victim
        self.next_id += 1
        return "insert", self.next_id - 1

    async def write(self, op: str, id_: int, scheduled: float | None = None) -> None:
        if scheduled is not None:
            self.scheduled[(op, id_)] = scheduled
        self.outstanding += 1
        try:
            if op == "insert":
                await self.client.insert(id_, self.vec(id_))
                now = time.time()
                self.acked_at[id_] = now
                self.latest_insert = (id_, now)
            else:
                await self.client.delete(id_)
                self.latest_delete = (id_, time.time())
        except GraphrepError as exc:  # timed out (a failover): its fate is unknown
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{op} {id_}: {exc}")
        finally:
            self.outstanding -= 1

    async def closed_loop(self, seconds: float, concurrency: int, search_ratio: float
                          ) -> float:
        """Writes with ``concurrency`` outstanding for ``seconds``, each followed by a
        search with probability ``search_ratio`` (the soak's mix); acknowledged/s."""
        first = len(self.client.history)
        t0 = time.time()
        stop = t0 + seconds
        kinds = ("ryw_insert", "nearest", "ryw_delete", "nearest")

        async def worker() -> None:
            n = 0
            while time.time() < stop:
                await self.write(*self.next_op())
                if self.rng.random() < search_ratio:
                    await self.search(kinds[n % len(kinds)], time.time(), record=False)
                    n += 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        rows = self.client.history[first:]
        ok = [r for r in rows if r["status"] == "ok" and r["done"] <= stop]
        return len(ok) / seconds

    async def paced_writes(self, rate: float, t0: float, end: float) -> None:
        """One write every 1/rate s from ``t0`` until ``end`` (each at its instant, at
        most ``max_outstanding`` in flight: past that the schedule waits)."""
        await _paced(rate, t0, end, self.args.max_outstanding,
                     lambda i: self.next_op(), self.write)

    async def paced_searches(self, rate: float, t0: float, end: float) -> None:
        kinds = ("ryw_insert", "nearest", "ryw_delete", "nearest")
        await _paced(rate, t0, end, 32, lambda i: (kinds[i % len(kinds)],), self.search)

    async def search(self, kind: str, scheduled: float, record: bool = True) -> None:
        row: dict[str, Any] = {"kind": kind, "at": scheduled, "sent": time.time()}
        target: int | None = None
        try:
            if kind == "nearest":
                ids, _ = await self.client.search(self.vec.query(self.qrng), k=10,
                                                  read_preference="nearest")
                row["ok"] = len(ids) == 10
            else:
                latest = self.latest_insert if kind == "ryw_insert" else self.latest_delete
                if latest is None or (kind == "ryw_insert" and latest[0] not in
                                      self.acked_at):
                    return  # nothing to check yet, or the id is being deleted
                target = latest[0]
                row.update(id=target, acked=latest[1])
                q = self.vec(target)
                ids, _ = await self.client.search(q, k=10, read_preference="leader")
                found = target in ids.tolist()
                row["ok"] = True
                row["top1"] = bool(len(ids)) and int(ids[0]) == target
                if kind == "ryw_insert" and not found:
                    # stale read, or a graph search that did not reach the point? k=100
                    # widens the beam to 100 (from 64); the session token still holds
                    more, _ = await self.client.search(q, k=100, read_preference="leader")
                    row["miss"] = True
                    row["violation"] = target not in more.tolist()
                elif kind == "ryw_delete" and found:
                    row["violation"] = True
        except GraphrepError as exc:
            row["ok"] = False
            row["error"] = str(exc)[:200]
        finally:
            row["done"] = time.time()
            if record and (kind == "nearest" or target is not None):
                self.searches.append(row)


# ---------------------------------------------------------------------- chaos


async def chaos(directory: Path, args: argparse.Namespace, client: Client, t0: float,
                end: float, events: list[dict[str, Any]]) -> None:
    rng = random.Random(args.seed + 2)
    nodes = sorted(client.cfg.nodes)
    at = t0 + args.kill_every
    while at + args.down + 5 < end:
        await trio.sleep(max(0.0, at - time.time()))
        for n in nodes:  # a node that died by itself is a finding: record, restart
            if local.pid_of(directory, n) is None:
                events.append({"t": time.time(), "event": "found_dead", "node": n})
                log(f"{n} was not running (nobody killed it); starting it")
                await trio.to_thread.run_sync(local.start, directory, n, 60.0)
        st = await client.status(timeout=1.0, digest=False)
        leader = local.leader_of(st)
        victim = rng.choice(nodes)
        await trio.to_thread.run_sync(local.kill, directory, victim)
        events.append({"t": time.time(), "event": "kill", "node": victim,
                       "was_leader": victim == leader})
        log(f"killed {victim} ({'leader' if victim == leader else 'follower'})")
        await trio.sleep(args.down)
        t = time.time()
        try:
            await trio.to_thread.run_sync(local.start, directory, victim, 60.0)
            events.append({"t": time.time(), "event": "start", "node": victim,
                           "start_s": round(time.time() - t, 2)})
            log(f"restarted {victim} in {time.time() - t:.1f} s")
        except GraphrepError as exc:
            events.append({"t": time.time(), "event": "start_failed", "node": victim,
                           "error": str(exc)[:300]})
            log(f"restart of {victim} failed: {exc}")
        at += args.kill_every


def failover_windows(events: list[dict[str, Any]], settle: float, end: float
                     ) -> list[tuple[float, float]]:
    """From each kill to max(kill + 5 s, its restart + settle)."""
    out = []
    kills = [e for e in events if e["event"] == "kill"]
    for k in kills:
        back = next((e["t"] for e in events if e["event"] in ("start", "start_failed")
                     and e["node"] == k["node"] and e["t"] >= k["t"]), end)
        out.append((k["t"], max(k["t"] + 5.0, back + settle)))
    return out


def in_windows(t: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(len(t), dtype=bool)
    for a, b in windows:
        mask |= (t >= a) & (t < b)
    return mask


# ---------------------------------------------------------------------- final checks






async def converge(client: Client, timeout: float) -> tuple[dict[str, Any], str]:
    """The status once every node answers, one leads, all applied its commit, digests
    equal; or the last status and why not."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {}
    why = "no status yet"
    while time.monotonic() < deadline:
        st = await client.status(timeout=2.0, digest=True)
        why = local.not_converged(st)
        if not why:
            break
        await trio.sleep(0.25)
    return st, why


def promised(history: list[dict[str, Any]]) -> tuple[set[int], set[int], set[int], int]:
    """Ids that must be live (acknowledged inserts, no delete sent), must not be
    (acknowledged deletes), may be (inserts sent); and writes still pending."""
    ins_ok = {r["id"] for r in history if r["op"] == "insert" and r["status"] == "ok"}
    del_ok = {r["id"] for r in history if r["op"] == "delete" and r["status"] == "ok"}
    del_any = {r["id"] for r in history if r["op"] == "delete"}
    sent = {r["id"] for r in history if r["op"] == "insert"}
    pending = sum(r["status"] not in ("ok", "failed") for r in history)
    return ins_ok - del_any, del_ok, sent, pending


async def check_replicas(client: Client, vectors: Vectors, queries: int, seed: int
                         ) -> dict[str, Any]:
    must, must_not, sent, pending = promised(client.history)
    nodes = sorted(client.cfg.nodes)
    out: dict[str, Any] = {"must_live": len(must), "must_be_deleted": len(must_not),
                           "pending_writes": pending, "per_node": {}}
    live = {}
    for n in nodes:
        try:
            _, ids = await client.ids(n, timeout=30.0)
        except GraphrepError as exc:
            out["per_node"][n] = {"error": str(exc)}
            continue
        live[n] = set(ids.tolist())
        out["per_node"][n] = {
            "live": len(live[n]), "duplicates": len(ids) - len(live[n]),
            "lost_inserts": len(must - live[n]), "resurrected": len(must_not & live[n]),
            "phantoms": len(live[n] - sent),
            "examples": {"lost": sorted(must - live[n])[:5],
                         "resurrected": sorted(must_not & live[n])[:5]}}
    out["lost"] = (sum(v.get("lost_inserts", 0) + v.get("resurrected", 0)
                       for v in out["per_node"].values())
                   if len(live) == len(nodes) else None)
    out["phantoms"] = sum(v.get("phantoms", 0) for v in out["per_node"].values())
    out["same_ids"] = len(live) == len(nodes) and all(live[n] == live[nodes[0]]
                                                      for n in nodes)
    rng = np.random.default_rng(seed + 3)
    agree = asked = 0
    for _ in range(queries):
        q = vectors.query(rng)
        try:
            answers = [(await client.search(q, k=10, node=n))[0] for n in nodes]
        except GraphrepError:
            continue
        asked += 1
        agree += all(np.array_equal(answers[0], a) for a in answers[1:])
    out["top10_agreement"] = round(agree / asked, 4) if asked else None
    out["top10_queries"] = asked
    return out


# ---------------------------------------------------------------------- the run


async def run(cluster: LocalCluster, args: argparse.Namespace, sampler: Sampler
              ) -> dict[str, Any]:
    cfg = cluster.cfg
    assert cfg is not None
    vectors = Vectors(args.dim, args.seed)
    res: dict[str, Any] = {}
    async with Client(cfg, history=True, timeout=args.write_timeout, attempt_timeout=1.0,
                      seed=args.seed, region="eu") as client:
        load = Load(client, vectors, args)
        # 1. the base index, through the client (inserts only)
        t = time.time()
        load.delete_frac = 0.0
        todo = iter(range(args.base))

        async def base_worker() -> None:
            for _ in todo:
                await load.write(*load.next_op())

        with trio.fail_after(600):
            async with trio.open_nursery() as nursery:
                for _ in range(32):
                    nursery.start_soon(base_worker)
        load.delete_frac = args.delete_frac
        res["base"] = {"vectors": args.base, "seconds": round(time.time() - t, 1),
                       "failed": load.failed}
        log(f"base index: {args.base} vectors in {time.time() - t:.1f} s")
        # 2. the maximum write rate, many writes outstanding
        probe_first = len(client.history)
        st = await client.status(timeout=2.0, digest=False)
        max_rate = await load.closed_loop(args.probe_seconds, args.probe_concurrency,
                                          args.search_ratio)
        rows = [r for r in client.history[probe_first:] if r["status"] == "ok"]
        res["probe"] = {"seconds": args.probe_seconds, "concurrency": args.probe_concurrency,
                        "search_ratio": args.search_ratio,
                        "writes_per_s": round(max_rate, 1), "leader": local.leader_of(st),
                        "latency_ms_p50": pct([(r["done"] - r["sent"]) * 1e3 for r in rows],
                                              50),
                        "latency_ms_p99": pct([(r["done"] - r["sent"]) * 1e3 for r in rows],
                                              99)}
        rate = args.load * max_rate
        if args.rate:
            rate = args.rate
        log(f"maximum {max_rate:.0f} writes/s (leader {local.leader_of(st)}); soak at "
            f"{rate:.0f} writes/s, {rate * args.search_ratio:.0f} searches/s, "
            f"{args.duration:.0f} s, a kill every {args.kill_every:.0f} s")
        await trio.sleep(min(1.0, args.probe_seconds))  # the probe's queue drains
        # 3. the soak
        soak_first = len(client.history)
        events: list[dict[str, Any]] = []
        t0 = time.time()
        end = t0 + args.duration

        async def progress() -> None:
            last = len(client.history)
            while time.time() < end:
                await trio.sleep(min(10.0, max(0.1, end - time.time())))
                rows = client.history[last:]
                last = len(client.history)
                lat = [(r["done"] - r["sent"]) * 1e3 for r in rows if r["status"] == "ok"]
                lag = {}
                for row in sampler.samples[-6:]:
                    for k, v in (row.get("m") or {}).items():
                        if k.startswith("graphrep_follower_lag_entries{"):
                            lag[k[30:-1]] = int(v)
                log(f"t={time.time() - t0:5.0f} s  writes {len(rows)} (p99 "
                    f"{pct(lat, 99)} ms)  outstanding {load.outstanding}  failed "
                    f"{load.failed}  leader {sampler.latest_leader()}  lag {lag}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(load.paced_writes, rate, t0, end)
            if args.search_ratio > 0:
                nursery.start_soon(load.paced_searches, rate * args.search_ratio, t0, end)
            if args.kill_every > 0:
                nursery.start_soon(chaos, cluster.dir, args, client, t0, end, events)
            nursery.start_soon(progress)
        drained = time.time()
        log(f"load stopped; {load.failed} writes failed; converging")
        # 4. convergence and the checks
        st, why = await converge(client, args.converge_timeout)
        converged = time.time()
        leader, row = local.leader_row(st) or (None, {"term": None})
        res["converge"] = {"seconds": round(converged - drained, 1), "why_not": why,
                           "digests": {n: (s["shards"][0]["digest"] if s.get("up") else None)
                                       for n, s in st.get("nodes", {}).items()},
                           "term": row["term"], "leader": leader}
        res["converge"]["digests_equal"] = (
            len(set(res["converge"]["digests"].values())) == 1
            and None not in res["converge"]["digests"].values())
        res["check"] = await check_replicas(client, vectors, args.agreement_queries,
                                            args.seed)
        log(f"checked: {json.dumps({k: res['check'][k] for k in ('lost', 'phantoms')})}")
        res.update(t0=t0, end=end, rate=rate, max_rate=max_rate, events=events,
                   history=client.history, soak_first=soak_first, scheduled=load.scheduled,
                   searches=load.searches, write_errors=load.errors,
                   vectors_inserted=load.next_id)
    return res


# ---------------------------------------------------------------------- analysis


def analyse(res: dict[str, Any], samples: list[dict[str, Any]], cfg: ClusterFile,
            args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    t0, end = res["t0"], res["end"]
    history = res["history"]
    soak = history[res["soak_first"]:]
    windows = failover_windows(res["events"], args.settle, end)
    ok = [r for r in soak if r["status"] == "ok"]
    sent = np.array([r["sent"] for r in ok])
    lat = np.array([(r["done"] - r["sent"]) * 1e3 for r in ok])
    late = np.array([(r["sent"] - res["scheduled"].get((r["op"], r["id"]), r["sent"])) * 1e3
                     for r in ok])
    outside = ~in_windows(sent, windows)
    steady = pct(lat[outside], 99)
    before_first_kill = pct(lat[sent < (windows[0][0] if windows else end)], 99)

    # the leader over time, from the metrics (the highest term seen in each round of
    # scrapes: a deposed leader may still say it leads until it hears the new term)
    rounds: dict[int, tuple[float, str]] = {}
    for s in samples:
        m = s.get("m") or {}
        if m.get("graphrep_is_leader") == 1:
            key = int(s["t"] // SCRAPE_EVERY)
            if key not in rounds or m.get("graphrep_term", 0) >= rounds[key][0]:
                rounds[key] = (m.get("graphrep_term", 0), s["node"])
    leader_at = sorted((k * SCRAPE_EVERY, n) for k, (_, n) in rounds.items())
    lt = np.array([t for t, _ in leader_at])
    region_of_write = np.array([""] * len(sent), dtype=object)
    if len(lt):
        idx = np.searchsorted(lt, sent) - 1
        for j, i in enumerate(idx):
            if i >= 0 and sent[j] - lt[i] < 2 * SCRAPE_EVERY + 1:
                region_of_write[j] = cfg.region_of(leader_at[i][1])
    # the steady state of each leader region (the WAN delay is paid when the leader is
    # alone in its region: a majority needs a follower across the link)
    steady_by_region = {}
    for region in sorted(set(region_of_write) - {""}):
        sel = outside & (region_of_write == region)
        steady_by_region[region] = {"writes": int(sel.sum()), "p50_ms": pct(lat[sel], 50),
                                    "p99_ms": pct(lat[sel], 99)}
    minutes = []
    for m in range(int(np.ceil((end - t0) / 60.0))):
        a, b = t0 + 60 * m, min(t0 + 60 * (m + 1), end)
        sel = (sent >= a) & (sent < b)
        sel_out = sel & outside
        p99_out = pct(lat[sel_out], 99)
        regions, counts = np.unique(region_of_write[sel_out].astype(str), return_counts=True)
        region = str(regions[np.argmax(counts)]) if len(regions) else ""
        ref = steady_by_region.get(region, {}).get("p99_ms")
        minutes.append({
            "minute": m, "writes": int(sel.sum()), "p50_ms": pct(lat[sel], 50),
            "p99_ms": pct(lat[sel], 99), "writes_outside": int(sel_out.sum()),
            "p50_outside_ms": pct(lat[sel_out], 50),
            "p99_outside_ms": p99_out, "late_ms_p99_outside": pct(late[sel_out], 99),
            "ratio_to_steady": (round(p99_out / steady, 2) if p99_out and steady else None),
            "leaders": sorted({n for t, n in leader_at if a <= t < b}),
            "leader_region": region,
            "ratio_to_region_steady": round(p99_out / ref, 2) if p99_out and ref else None})
    counted = [m for m in minutes if m["writes_outside"] >= 100 and m["ratio_to_steady"]]
    p99_goal = bool(counted) and all(m["ratio_to_steady"] <= 2.0 for m in counted)
    p99_region_goal = bool(counted) and all(
        (m["ratio_to_region_steady"] or 0) <= 2.0 for m in counted)

    # 10 s windows for the plot
    tens = []
    for a in np.arange(t0, end, 10.0):
        sel = (sent >= a) & (sent < a + 10)
        tens.append({"t": round(float(a - t0), 1), "writes": int(sel.sum()),
                     "p50_ms": pct(lat[sel], 50), "p99_ms": pct(lat[sel], 99)})

    # follower lag (on the leader)
    lag_series: dict[str, list[tuple[float, int]]] = {}
    for s in samples:
        for k, v in (s.get("m") or {}).items():
            if k.startswith("graphrep_follower_lag_entries{") and s["t"] >= t0:
                lag_series.setdefault(k[30:-1], []).append((round(s["t"] - t0, 1), int(v)))
    all_lag = [v for series in lag_series.values() for _, v in series]
    lag_t = np.array([t + t0 for series in lag_series.values() for t, _ in series])
    lag_v = np.array(all_lag)
    lag_out = lag_v[~in_windows(lag_t, windows)] if len(lag_t) else lag_v

    # memory and descriptors per incarnation
    slot_bytes = args.dim * 4 + cfg.R * 4 + 33
    ins_done = np.sort(np.array([r["done"] for r in history
                                 if r["op"] == "insert" and r["status"] == "ok"]))

    def index_bytes(t: float) -> int:
        return int(np.searchsorted(ins_done, t, side="right")) * slot_bytes

    for w in tens:
        w["index_mb"] = round(index_bytes(t0 + w["t"] + 10) / 2**20, 1)
    incarnations = []
    cpu: dict[str, float] = {}
    for node in [*sorted(cfg.nodes), "client"]:
        rows = [s for s in samples if s["node"] == node and s.get("rss")]
        for pid in dict.fromkeys(s["pid"] for s in rows):
            mine = [s for s in rows if s["pid"] == pid]
            # from the first sample after its start-up (the index loaded, caught up)
            ready = [s for s in mine if (s.get("m") or {}).get("graphrep_ready") == 1]
            first = ready[0] if ready else mine[0]
            last = mine[-1]
            during = [s for s in mine if t0 <= s["t"] <= end and s.get("cpu") is not None]
            if len(during) > 1:
                cpu[node] = cpu.get(node, 0.0) + during[-1]["cpu"] - during[0]["cpu"]
            idx_grow = index_bytes(last["t"]) - index_bytes(first["t"])
            incarnations.append({
                "node": node, "pid": pid, "from_s": round(mine[0]["t"] - t0, 1),
                "to_s": round(last["t"] - t0, 1), "samples": len(mine),
                "rss_mb_first": round(first["rss"] / 2**20, 1),
                "rss_mb_last": round(last["rss"] / 2**20, 1),
                "rss_mb_max": round(max(s["rss"] for s in mine) / 2**20, 1),
                "rss_growth_mb": round((last["rss"] - first["rss"]) / 2**20, 1),
                "anon_mb_first": round(first.get("anon", 0) / 2**20, 1),
                "anon_mb_last": round(last.get("anon", 0) / 2**20, 1),
                "file_mb_last": round(last.get("file", 0) / 2**20, 1),
                "index_mb_first": round(index_bytes(first["t"]) / 2**20, 1),
                "index_mb_last": round(index_bytes(last["t"]) / 2**20, 1),
                "index_growth_mb": round(idx_grow / 2**20, 1),
                "rss_growth_over_index_growth": (
                    round((last["rss"] - first["rss"]) / idx_grow, 2) if idx_grow else None),
                "fds_first": first.get("fds"), "fds_last": last.get("fds"),
                "fds_max": max((s["fds"] for s in mine if s.get("fds") is not None),
                               default=None)})
    nodes_inc = [i for i in incarnations if i["node"] != "client"]
    # allowance: the arrays double their capacity (up to 2x the slots in use), the node
    # keeps its last snapshot's bytes (about 1.4x the arrays at dim 32), and the log
    # between snapshots is bounded (snapshot_every entries)
    slack = args.rss_slack_mb * 2**20
    long_lived = [i for i in nodes_inc if i["to_s"] - i["from_s"] >= 20]
    rss_goal = None if not long_lived else all(
        i["rss_growth_mb"] * 2**20 <= 3 * i["index_growth_mb"] * 2**20 + slack
        for i in long_lived)
    fd_goal = None if not long_lived else all(
        None not in (i["fds_last"], i["fds_first"]) and i["fds_last"] <= i["fds_first"] + 4
        for i in long_lived)
    # a restarted node rebuilds its state from its store: what the oldest process holds
    # beyond the youngest (the same index) is what a long life accumulated
    finals = {}
    for i in nodes_inc:
        if i["to_s"] >= (end - t0) - 2 * SCRAPE_EVERY - 1:
            finals[i["node"]] = i
    old_vs_young = None
    if len(finals) > 1:
        oldest = min(finals.values(), key=lambda i: i["from_s"])
        youngest = max(finals.values(), key=lambda i: i["from_s"])
        old_vs_young = {"oldest": f"{oldest['node']} since {oldest['from_s']} s",
                        "youngest": f"{youngest['node']} since {youngest['from_s']} s",
                        "rss_mb": [oldest["rss_mb_last"], youngest["rss_mb_last"]],
                        "excess_mb": round(oldest["rss_mb_last"] - youngest["rss_mb_last"],
                                           1)}
    soak_s = end - t0
    cpu_cores = {n: round(v / soak_s, 2) for n, v in cpu.items()}

    # searches
    srch = res["searches"]
    ryw = [s for s in srch if s["kind"].startswith("ryw")]
    violations = [s for s in ryw if s.get("violation")]
    misses = [s for s in ryw if s.get("miss")]
    nearest = [s for s in srch if s["kind"] == "nearest"]
    search_lat = {k: pct([(s["done"] - s["sent"]) * 1e3 for s in srch
                          if s["kind"] == k and s.get("ok")], 99)
                  for k in ("ryw_insert", "ryw_delete", "nearest")}

    # node logs
    problems: dict[str, list[str]] = {}
    warnings: dict[str, int] = {}
    for path in sorted(directory.glob("n*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if PROBLEM.search(line):
                problems.setdefault(path.stem, []).append(line[:300])
            if "WARNING" in line:
                key = re.sub(r"[0-9.]+", "#", line.split("WARNING", 1)[1])[:80]
                warnings[key] = warnings.get(key, 0) + 1
    # loop stalls (a node's loop held by one callback: it sends nothing meanwhile, not
    # even heartbeats), per minute of the soak, from the logs
    stall_re = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+) .*handling (.*) held "
                          r"the loop for (\d+) ms")
    stalls: list[tuple[float, str, str, int]] = []
    for path in sorted(directory.glob("n*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if (hit := stall_re.match(line)) is not None:
                at = time.mktime(time.strptime(hit.group(1), "%Y-%m-%d %H:%M:%S"))
                stalls.append((at + int(hit.group(2)) / 1e3 - t0, path.stem,
                               hit.group(3)[:40], int(hit.group(4))))
    shortest_election = cfg.protocol.get("election_timeout_ns", (1e9, 2e9))[0] / 1e6
    for m in minutes:
        mine = [x for x in stalls if 60 * m["minute"] <= x[0] < 60 * (m["minute"] + 1)]
        m["loop_stall_max_ms"] = max((x[3] for x in mine), default=0)
        m["loop_stalls_past_election_timeout"] = sum(x[3] >= shortest_election
                                                     for x in mine)
    # elections: the highest term seen in each round of scrapes, and where it rose
    terms: dict[int, float] = {}
    for s in samples:
        m = s.get("m") or {}
        if "graphrep_term" in m:
            key = int(s["t"] // SCRAPE_EVERY)
            terms[key] = max(terms.get(key, 0), m["graphrep_term"])
    elections_in = elections_out = 0
    last_term = None
    for key in sorted(terms):
        t = key * SCRAPE_EVERY
        if last_term is not None and terms[key] > last_term and t >= t0:
            rise = int(terms[key] - last_term)
            if any(a <= t <= b + SCRAPE_EVERY for a, b in windows):
                elections_in += rise
            else:
                elections_out += rise
        last_term = terms[key]
    # snapshots: taken, installed, and the bytes leaders sent (each process's counter)
    snaps = {}
    for s in samples:
        m = s.get("m") or {}
        if "graphrep_snapshots_taken_total" in m:
            snaps[(s["node"], s["pid"])] = (m["graphrep_snapshots_taken_total"],
                                            m.get("graphrep_snapshots_installed_total", 0),
                                            m.get("graphrep_snapshot_sent_bytes_total", 0),
                                            m.get("graphrep_loop_stall_max_seconds", 0))
    store_end = max(((s.get("m") or {}).get("graphrep_store_size_bytes", 0)
                     for s in samples), default=0)

    check = res["check"]
    lost = check["lost"]
    kills = [e for e in res["events"] if e["event"] == "kill"]
    summary = {
        "duration_s": args.duration, "kill_every_s": args.kill_every, "dim": args.dim,
        "base_vectors": args.base, "max_writes_per_s": round(res["max_rate"], 1),
        "target_writes_per_s": round(res["rate"], 1),
        "achieved_writes_per_s": round(len(ok) / (end - t0), 1),
        "writes": {"sent": len(soak), "acknowledged": len(ok),
                   "failed": sum(r["status"] == "failed" for r in soak),
                   "deletes": sum(r["op"] == "delete" for r in soak)},
        "kills": len(kills), "leader_kills": sum(e["was_leader"] for e in kills),
        "restarts_failed": sum(e["event"] == "start_failed" for e in res["events"]),
        "found_dead": sum(e["event"] == "found_dead" for e in res["events"]),
        "converge_s": res["converge"]["seconds"], "converged": not res["converge"]["why_not"],
        "lost_acknowledged_writes": lost, "phantoms": check["phantoms"],
        "digests_equal": res["converge"]["digests_equal"],
        "top10_agreement": check["top10_agreement"],
        "ryw_checks": len(ryw), "ryw_violations": len(violations),
        "ryw_graph_misses": len(misses) - sum(bool(s.get("violation")) for s in misses),
        "searches": {"leader": len(ryw), "nearest": len(nearest),
                     "failed": sum(not s.get("ok") for s in srch), "p99_ms": search_lat},
        "write_p99_ms_steady": steady, "write_p99_ms_before_first_kill": before_first_kill,
        "write_p99_ms_per_minute_outside_failover": [m["p99_outside_ms"] for m in minutes],
        "write_p99_ms_per_minute_all": [m["p99_ms"] for m in minutes],
        "write_p99_ms_steady_by_leader_region": steady_by_region,
        "follower_lag_max": int(max(all_lag)) if all_lag else None,
        "follower_lag_p99_outside_failover": pct(lag_out, 99),
        "rss_mb_last": {i["node"]: i["rss_mb_last"] for i in nodes_inc},
        "rss_oldest_vs_youngest": old_vs_young, "cpu_cores": cpu_cores,
        "index_mb_end": round(index_bytes(end + 3600) / 2**20, 1),
        "log_problems": sum(len(v) for v in problems.values()),
        "elections": {"in_failover_windows": elections_in,
                      "outside_failover_windows": elections_out},
        "loop_stall_max_ms_per_minute": [m["loop_stall_max_ms"] for m in minutes],
        "loop_stalls_past_election_timeout": sum(
            m["loop_stalls_past_election_timeout"] for m in minutes),
        "snapshots": {"taken": int(sum(v[0] for v in snaps.values())),
                      "installed": int(sum(v[1] for v in snaps.values())),
                      "sent_mb": round(sum(v[2] for v in snaps.values()) / 2**20),
                      "largest_store_mb": round(store_end / 2**20)},
    }
    summary["goals"] = {
        "no acknowledged write lost": lost == 0 and summary["phantoms"] == 0
        and summary["digests_equal"] and summary["top10_agreement"] == 1.0,
        "read-your-writes": not violations and bool(ryw),
        "write p99 per minute within 2x of steady outside failover": p99_goal,
        "(the same, against the steady state of the minute's leader region)":
            p99_region_goal,
        "no RSS or descriptor growth beyond the index":
            None if rss_goal is None else bool(rss_goal and fd_goal),
    }
    detail = {
        "summary": summary, "args": vars(args), "cluster_dir": str(directory), "t0": t0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "base": res["base"], "probe": res["probe"], "converge": res["converge"],
        "check": check, "events": [{**e, "t": round(e["t"] - t0, 2)} for e in res["events"]],
        "failover_windows_s": [(round(a - t0, 1), round(b - t0, 1)) for a, b in windows],
        "minutes": minutes, "ten_seconds": tens, "incarnations": incarnations,
        "rss_goal": {"rule": f"growth <= 3 x index growth + {args.rss_slack_mb} MB, "
                     "descriptors last <= first + 4, incarnations of >= 20 s",
                     "rss": rss_goal, "fds": fd_goal, "slot_bytes": slot_bytes,
                     "oldest_vs_youngest": old_vs_young},
        "follower_lag": lag_series,
        "ryw_violations": violations[:20], "ryw_misses": misses[:20],
        "search_errors": [s.get("error") for s in srch if not s.get("ok")][:10],
        "write_errors": res["write_errors"],
        "snapshots_taken_installed_sentbytes_stallmax": {f"{n}/{p}": v
                                                         for (n, p), v in snaps.items()},
        "loop_stalls": [(round(a, 1), n, what, ms) for a, n, what, ms in stalls],
        "log_problems": {k: v[:10] for k, v in problems.items()},
        "log_warnings": warnings,
        "samples": [{k: v for k, v in s.items()} for s in samples if s["t"] >= t0 - 5],
    }
    return detail


def plot(detail: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    tens = detail["ten_seconds"]
    t = [w["t"] + 5 for w in tens]
    a.plot(t, [w["p99_ms"] if w["p99_ms"] is not None else np.nan for w in tens],
           "o-", ms=3, label="write p99 (10 s)")
    a.plot(t, [w["p50_ms"] if w["p50_ms"] is not None else np.nan for w in tens],
           ".-", ms=2, alpha=0.6, label="write p50 (10 s)")
    steady = detail["summary"]["write_p99_ms_steady"]
    if steady:
        a.axhline(steady, color="grey", lw=0.8, ls="--", label="steady p99")
        a.axhline(2 * steady, color="grey", lw=0.8, ls=":", label="2 x steady p99")
    a.set_yscale("log")
    a.set_ylabel("write latency (ms)")
    a.legend(loc="upper left", fontsize=7, ncol=4)
    for follower, series in sorted(detail["follower_lag"].items()):
        b.plot([x for x, _ in series], [max(v, 0.5) for _, v in series], ".", ms=3,
               label=f"{follower}")
    b.set_yscale("log")
    b.set_ylabel("follower lag (entries, on the leader; 0 at 0.5)")
    b.legend(loc="upper left", fontsize=7)
    t0 = detail["t0"]
    by_pid: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for s in detail["samples"]:
        if s.get("rss"):
            by_pid.setdefault((s["node"], s["pid"]), []).append((s["t"] - t0, s["rss"] / 2**20))
    colours = {"n1": "tab:blue", "n2": "tab:orange", "n3": "tab:green", "client": "grey"}
    seen = set()
    for (node, _), series in by_pid.items():
        c.plot([x for x, _ in series], [v for _, v in series], color=colours.get(node),
               ls="--" if node == "client" else "-",
               label=(node if node != "client" else "this driver (client)")
               if node not in seen else None)
        seen.add(node)
    c.plot(t, [w["index_mb"] for w in tens], color="black", lw=0.8, ls=":",
           label="index (vectors + graph)")
    c.set_ylabel("RSS (MB)")
    c.set_xlabel("seconds into the soak")
    c.legend(loc="upper left", fontsize=7)
    for ax in (a, b, c):
        for lo, hi in detail["failover_windows_s"]:
            ax.axvspan(lo, hi, color="red", alpha=0.07)
        for e in detail["events"]:
            if e["event"] == "kill":
                ax.axvline(e["t"], color="red", lw=0.8, ls="--")
            elif e["event"] == "start":
                ax.axvline(e["t"], color="green", lw=0.8, ls=":")
    for e in detail["events"]:
        if e["event"] == "kill":
            a.annotate(f"kill {e['node']}{'*' if e['was_leader'] else ''}", (e["t"], 1.0),
                       xycoords=("data", "axes fraction"), fontsize=6, rotation=90,
                       va="top", ha="right", color="red")
    s = detail["summary"]
    fig.suptitle(f"soak: {s['duration_s']:.0f} s at {s['target_writes_per_s']:.0f} writes/s "
                 f"({detail['args']['load']} x {s['max_writes_per_s']:.0f}), kills every "
                 f"{s['kill_every_s']:.0f} s "
                 "(* leader; red dashed kill, green dotted restart)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="soak seconds")
    p.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills "
                   "(0: none)")
    p.add_argument("--down", type=float, default=3.0, help="seconds a killed node stays down")
    p.add_argument("--settle", type=float, default=2.0,
                   help="a failover window ends this long after the restart (at least 5 s "
                   "after the kill)")
    p.add_argument("--quick", action="store_true",
                   help="60 s, a kill every 15 s, a 2,000-vector base, a 5 s probe")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--base", type=int, default=5000, help="vectors loaded before the probe")
    p.add_argument("--probe-seconds", type=float, default=10.0)
    p.add_argument("--probe-concurrency", type=int, default=64)
    p.add_argument("--load", type=float, default=0.7, help="soak rate / measured maximum")
    p.add_argument("--rate", type=float, default=0.0, help="soak writes/s (overrides --load)")
    p.add_argument("--delete-frac", type=float, default=0.1)
    p.add_argument("--search-ratio", type=float, default=0.1,
                   help="searches per write (in the probe too)")
    p.add_argument("--max-outstanding", type=int, default=224,
                   help="writes in flight at most (with up to 32 searches: a node answers "
                   "busy past 256 requests per connection)")
    p.add_argument("--write-timeout", type=float, default=10.0)
    p.add_argument("--converge-timeout", type=float, default=180.0)
    p.add_argument("--agreement-queries", type=int, default=50)
    p.add_argument("--rss-slack-mb", type=float, default=64.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", default="", help="run the cluster in this (new or empty) "
                   "directory and keep it (node logs, stores) for inspection")
    p.add_argument("--out", default="experiments/results")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.kill_every, args.base, args.probe_seconds = 60.0, 15.0, 2000, 5.0
    return args


def warm(dim: int) -> None:
    """Compile the kernels once here, so that the nodes load them from numba's cache
    instead of compiling them three times at once. ``warm_up`` searches with a writable
    query, but a node searches with the read-only view of the request's bytes, which
    numba compiles separately: on a cold cache, each node's first search held its loop
    2-3 s (past the election timeout). Searching with a read-only query here fills the
    cache for them too."""
    from graphrep.ann import VamanaIndex

    warm_up(dim)
    index = VamanaIndex(dim, "l2")
    rng = np.random.default_rng(0)
    for i in range(16):
        index.insert(i, rng.standard_normal(dim).astype(np.float32))
    query = np.frombuffer(rng.standard_normal(dim).astype("<f4").tobytes(), dtype="<f4")
    index.search(query, k=10)


def _sigterm(*_: Any) -> None:
    os.kill(os.getpid(), signal.SIGINT)  # the same way out as ^C: the cluster goes down


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _sigterm)
    if args.keep:
        directory = Path(args.keep).resolve()
        if directory.exists() and any(directory.iterdir()):
            print(f"--keep {directory}: not empty; give a new or empty directory",
                  file=sys.stderr)
            return 2
        place: Any = contextlib.nullcontext(str(directory))
    else:
        place = tempfile.TemporaryDirectory(prefix="graphrep-soak-")
    t = time.time()
    warm(args.dim)
    log(f"kernels ready in {time.time() - t:.1f} s")
    with place as where:
        directory = Path(where)
        t = time.time()
        with LocalCluster(directory, nodes=3, dim=args.dim, regions=REGIONS, delays=DELAYS,
                          wait=300) as cluster:
            cfg = cluster.cfg
            assert cfg is not None
            log(f"cluster up in {time.time() - t:.1f} s in {directory} ("
                + ", ".join(f"{n}={cfg.region_of(n)}" for n in sorted(cfg.nodes)) + ")")
            sampler = Sampler(cluster.dir, cfg)
            sampler.start()
            try:
                res = trio.run(run, cluster, args, sampler)
            finally:
                sampler.halt.set()
                sampler.join(timeout=10)
        # the cluster is down; its logs are still there
        detail = analyse(res, sampler.samples, cfg, args, directory)
    (out / "live_soak.json").write_text(json.dumps(detail, indent=1, default=str) + "\n")
    plot(detail, out / "live_soak.png")
    summary = {**detail["summary"], "json": str(out / "live_soak.json"),
               "plot": str(out / "live_soak.png")}
    if args.keep:
        summary["cluster_dir"] = str(directory)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
