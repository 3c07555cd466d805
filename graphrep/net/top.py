"""``graphrep top``: a live terminal view of a local cluster, one row per node and shard.

Two halves, kept apart so that the view can be tested without processes:

* :func:`snapshot` asks the cluster in a directory what ``graphrep cluster status``
  asks it (:func:`graphrep.net.local.status`, with ``digest=False``: no node hashes
  its index), adds each node's region from the cluster file and, from its
  ``/metrics``, the buckets of its ``graphrep_wal_fsync_duration_seconds`` histogram
  (and of ``graphrep_client_request_duration_seconds`` where the node has it), and
  stamps the result with the time it was taken. It is a plain dict.
* :func:`render` turns a snapshot, and the one before it, into a ``rich.table.Table``:
  a pure function (no I/O, no clock).

:func:`run` shows a new frame every ``interval`` seconds (``rich.live.Live``), or
prints one frame and returns (``once``). A node that does not answer is shown down and
the view goes on; Ctrl-C ends it with status 0.

Where each number comes from:

* ``up``: the node answered ``status`` on its node port; ``ready``: its ``/readyz``
  answered 200 (``-``: no metrics address, so unknown);
* ``role``, ``term``, ``commit``, ``applied``: the replica's own answer to ``status``;
* ``lag``: the commit position of the shard's leader (as the leader reports it) minus
  this replica's applied position, in log entries; ``-`` while no answering replica
  leads the shard;
* ``writes/s``: how far this replica's commit position moved between the previous
  frame and this one, divided by the seconds between them (one log entry is one
  write); ``-`` on the first frame;
* ``fsync p99``: the 99th percentile of the node's store commits (one SQLite
  transaction, whose COMMIT fsyncs the write-ahead log), estimated from the buckets of
  ``graphrep_wal_fsync_duration_seconds`` the way Prometheus' ``histogram_quantile``
  does (linear within a bucket): over the commits since the previous frame, or, on the
  first frame, since the node started. It is not a client's write latency. The store
  is the node's, so every shard row of a node shows the same;
* ``write p99``, only when the nodes expose :data:`REQUESTS` (client requests timed at
  the node from arrival to reply): the 99th percentile of the writes answered ok
  (insert, delete, delta), estimated the same way over the same span; per node (a
  follower answers no writes: ``-``). Without that histogram there is no column: no
  number stands in for it.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["FSYNC", "LAG", "REQUESTS", "WRITE_OPS", "histograms", "p99_text", "quantile",
           "render", "run", "snapshot", "window"]

FSYNC = "graphrep_wal_fsync_duration_seconds"
"""The histogram the ``fsync p99`` column reads (:mod:`graphrep.net.metrics`)."""
REQUESTS = "graphrep_client_request_duration_seconds"
"""The histogram the ``write p99`` column reads, where the nodes expose it: client
requests timed at the node from arrival to reply, by ``op`` and ``status``."""
LAG = "graphrep_replication_lag_seconds"
"""A leader's histogram of the time from an entry's append to a follower's
acknowledgement of it (:mod:`graphrep.net.metrics`)."""
WRITE_OPS = ("insert", "delete", "delta")
"""The ``op`` labels of :data:`REQUESTS` that are writes."""

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Opens URLs without the proxies the environment may name: the nodes are local."""

COLUMNS = ("node", "region", "state", "ready", "shard", "role", "term", "commit",
           "applied", "lag", "writes/s", "fsync p99")


# ------------------------------------------------------------------------- gathering


def _buckets(family: Any, keep: Any = None) -> dict[str, Any] | None:
    """A histogram family's cumulative buckets, summed over the label sets ``keep``
    accepts (all without ``keep``): ``{"buckets": [[le, count], ...], "count": n}``
    (``le`` ascending, the last ``inf``), or None without buckets."""
    counts: dict[float, float] = {}
    total = 0.0
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        if keep is not None and not keep(labels):
            continue
        if sample.name == f"{family.name}_bucket":
            le = float(sample.labels["le"])
            counts[le] = counts.get(le, 0.0) + sample.value
        elif sample.name == f"{family.name}_count":
            total += sample.value
    if not counts:
        return None
    return {"buckets": [[le, c] for le, c in sorted(counts.items())], "count": total}


def _is_write(labels: dict[str, str]) -> bool:
    return labels.get("op") in WRITE_OPS and labels.get("status") == "ok"


def histograms(metrics_url: str, timeout: float = 1.0) -> dict[str, Any]:
    """From the node's ``/metrics``: ``fsync``, the buckets of :data:`FSYNC`,
    ``writes``, those of :data:`REQUESTS` for writes answered ok (summed over
    :data:`WRITE_OPS`), and ``lag``, those of :data:`LAG` (summed over shards); each None
    if the endpoint did not answer or has no such histogram (a node without
    :data:`REQUESTS` does not time client requests)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {"fsync": None, "writes": None, "lag": None}
    try:
        with _DIRECT.open(metrics_url, timeout=timeout) as reply:
            text = reply.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return out
    try:
        for family in text_string_to_metric_families(text):
            if family.name == FSYNC:
                out["fsync"] = _buckets(family)
            elif family.name == REQUESTS:
                out["writes"] = _buckets(family, _is_write)
            elif family.name == LAG:
                out["lag"] = _buckets(family)
    except (ValueError, KeyError, TypeError):  # not the exposition format
        return {"fsync": None, "writes": None, "lag": None}
    return out


def snapshot(directory: str | Path) -> dict[str, Any]:
    """What :func:`render` shows, as of now: :func:`graphrep.net.local.status` (no
    digests) with, per node, ``region``, ``hosts`` (the shards the placement puts on
    it, so that a node that is down still has its rows), ``fsync`` and ``writes``
    (:func:`histograms`, None when down or unknown); ``time`` (monotonic seconds,
    for rates) and ``clock`` (wall time, for the title). Raises
    :class:`~graphrep.errors.ClusterError` if ``directory`` holds no cluster."""
    from graphrep.net import local
    from graphrep.net.config import ClusterFile

    st = local.status(directory, digest=False)
    taken = time.monotonic()
    cfg = ClusterFile.load(Path(directory) / local.CONFIG)
    hosts: dict[str, list[int]] = {n: [] for n in cfg.nodes}
    for p in cfg.placement():
        for n in p.replicas:
            hosts[n].append(p.shard)
    for name, s in st["nodes"].items():
        spec = cfg.nodes.get(name)
        s["region"] = spec.region if spec else ""
        s["hosts"] = sorted(hosts.get(name, []))
        s.update(histograms(spec.metrics_url) if s.get("up") and spec and spec.metrics_url
                 else {"fsync": None, "writes": None, "lag": None})
    st["time"] = taken
    st["clock"] = time.strftime("%H:%M:%S")
    st["dir"] = str(directory)
    return st


# ------------------------------------------------------------------------- rendering


def quantile(q: float, buckets: list[list[float]]) -> float | None:
    """The ``q`` quantile of cumulative histogram ``buckets`` (``[[le, count], ...]``,
    ``le`` ascending, the last ``inf``), interpolated linearly within its bucket as
    Prometheus' ``histogram_quantile`` does; the largest finite bound if it falls in
    the ``+Inf`` bucket; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower
            if count == below:
                return le
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def window(now: dict[str, Any] | None, before: dict[str, Any] | None
            ) -> list[list[float]] | None:
    """The buckets of the observations made between ``before`` and ``now`` (both
    cumulative since the node started); all of ``now`` without a usable ``before``
    (none, another set of buckets, or fewer observations: the node restarted)."""
    if not now:
        return None
    b = now["buckets"]
    if (not before or [le for le, _ in before["buckets"]] != [le for le, _ in b]
            or before["buckets"][-1][1] > b[-1][1]):
        return b
    return [[le, c - p] for (le, c), (_, p) in zip(b, before["buckets"], strict=True)]


def p99_text(buckets: list[list[float]] | None) -> str:
    """The ``fsync p99`` cell for cumulative ``buckets``: milliseconds, ``>X ms`` when
    the 99th percentile lies beyond the largest finite bucket ``X`` (only that bound is
    known), ``-`` without buckets or observations."""
    if not buckets or buckets[-1][1] <= 0:
        return "-"
    if len(buckets) > 1 and math.isinf(buckets[-1][0]) and 0.99 * buckets[-1][1] > \
            buckets[-2][1]:
        return f">{buckets[-2][0] * 1e3:g} ms"
    ms = (quantile(0.99, buckets) or 0.0) * 1e3
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def _leader_commits(snap: dict[str, Any]) -> dict[int, int]:
    """Shard -> the commit position its leader reports (the highest, should two
    answering replicas both claim to lead in different terms)."""
    out: dict[int, int] = {}
    for s in snap["nodes"].values():
        if s.get("up"):
            for row in s.get("shards", []):
                if row["role"] == "leader":
                    out[row["shard"]] = max(out.get(row["shard"], 0), row["commit"])
    return out


def _rows_of(s: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["shard"]: row for row in s.get("shards", [])} if s.get("up") else {}


def render(snap: dict[str, Any], prev: dict[str, Any] | None = None) -> Table:
    """The frame for snapshot ``snap`` (:func:`snapshot`'s dict; ``prev`` the one
    before it, for rates and the fsync window): one row per node and shard, sorted
    by node then shard. Only ``nodes`` (per node ``up`` and, when up, ``shards`` with
    ``shard``, ``role``, ``term``, ``commit``, ``applied``), ``time`` and, for rates,
    ``prev`` are needed; ``region``, ``ready``, ``hosts``, ``fsync``, ``cluster``,
    ``clock`` and ``dir`` are shown when present."""
    leaders = _leader_commits(snap)
    dt = snap["time"] - prev["time"] if prev and "time" in snap and "time" in prev else 0.0
    title = f"graphrep top: cluster {snap.get('cluster', '?')}"
    if snap.get("dir"):
        title += f" in {snap['dir']}"
    if snap.get("clock"):
        title += f" at {snap['clock']}"
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  caption_justify="left")
    timed = any(s.get("up") and s.get("writes") for s in snap["nodes"].values())
    columns = COLUMNS + (("write p99",) if timed else ())
    latencies = ("fsync", "writes") if timed else ("fsync",)
    for name in columns:
        numeric = name not in ("node", "region", "state", "ready", "role")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    notes = []
    ups = 0
    for name, s in sorted(snap["nodes"].items()):
        up = bool(s.get("up"))
        ups += up
        ready = {True: Text("yes", "green"), False: Text("no", "yellow"),
                 None: Text("-")}[s.get("ready") if up else None]
        if up and s.get("ready") is False and s.get("not_ready"):
            notes.append(f"{name} not ready: {s['not_ready']}")
        state = Text("up", "green") if up else Text("down", "bold red")
        before = prev["nodes"].get(name, {}) if prev else {}
        p99 = [p99_text(window(s.get(key), before.get(key) if before.get("up") else None))
               if up else "-" for key in latencies]
        rows = _rows_of(s)
        earlier = _rows_of(before)
        for shard in sorted(set(rows) | set(s.get("hosts", []))) or [None]:
            row = rows.get(shard)
            head = [name, s.get("region", ""), state, ready,
                    "-" if shard is None else str(shard)]
            if row is None:
                table.add_row(*head, *["-"] * (len(columns) - len(head)))
                continue
            role = Text(row["role"], "bold cyan" if row["role"] == "leader" else "")
            lag = (str(max(leaders[shard] - row["applied"], 0)) if shard in leaders
                   else "-")
            rate = "-"
            old = earlier.get(shard)
            if old is not None and dt > 0 and row["commit"] >= old["commit"]:
                rate = f"{(row['commit'] - old['commit']) / dt:.1f}"
            table.add_row(*head, role, str(row["term"]), str(row["commit"]),
                          str(row["applied"]), lag, rate, *p99)
    span = f"over the last {dt:.1f} s" if dt > 0 else "since each node started"
    table.caption = "\n".join([
        f"{ups} of {len(snap['nodes'])} nodes up. lag: the leader's commit minus this "
        "replica's applied, in entries. writes/s: committed entries per second "
        + (span if dt > 0 else "(from the second frame on)")
        + f". fsync p99: the node's store commits (each fsyncs the WAL) {span}, from "
        f"{FSYNC}; not a client's write latency."
        + (f" write p99: writes answered ok, from arrival to reply at the node, {span}, "
           f"from {REQUESTS}." if timed else ""), *notes])
    return table


# ------------------------------------------------------------------------- running


def _console_for_once() -> Console:
    """A console for one frame: the terminal's, or wide enough not to cut the table
    when printing to a pipe or a file (rich assumes 80 columns there)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, 200))
    return console


def run(directory: str | Path, interval: float = 1.0, once: bool = False,
        console: Console | None = None) -> int:
    """``graphrep top``: the exit status. ``once``: print one frame and return 0 if
    every node answered, 1 if not (as ``graphrep cluster status`` does); otherwise
    refresh every ``interval`` seconds until Ctrl-C, then return 0."""
    first = snapshot(directory)  # no cluster in directory: ClusterError, before any view
    if once:
        (console or _console_for_once()).print(render(first))
        return 0 if all(s.get("up") for s in first["nodes"].values()) else 1
    prev, snap = None, first
    try:
        with Live(render(snap), console=console or Console(highlight=False),
                  auto_refresh=False) as live:
            due = time.monotonic() + interval
            while True:
                time.sleep(max(due - time.monotonic(), 0.0))
                due = time.monotonic() + interval
                try:
                    prev, snap = snap, snapshot(directory)
                    table = render(snap, prev)
                except Exception as exc:  # keep the last frame, say why this one failed
                    table = render(snap, prev)
                    table.caption = f"{table.caption}\nrefresh failed: {exc}"
                live.update(table, refresh=True)
    except KeyboardInterrupt:
        pass
    return 0
