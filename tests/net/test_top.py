"""``graphrep top``: the frame as a pure function of snapshots (rates between two, lag,
a node that is down, the fsync p99 from histogram buckets), the live loop with its
snapshots made by hand (a refresh that fails, Ctrl-C), and once against three node
processes (``LocalCluster``, taken down on every way out) through the CLI entry."""

from __future__ import annotations

import http.server
import io
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from rich.console import Console
from rich.table import Table

from graphrep.cli import main
from graphrep.net import SyncClient, local, top
from graphrep.net.local import LocalCluster

DIM = 8
INF = math.inf


def cells(table: Table) -> list[dict[str, str]]:
    """The table's rows as {column header: plain text}."""
    columns = {str(c.header): [str(cell) for cell in c.cells] for c in table.columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                       strict=True)]


def shard(n: int, role: str, term: int, commit: int, applied: int) -> dict[str, Any]:
    return {"shard": n, "role": role, "term": term, "commit": commit, "applied": applied,
            "leader": ""}


def node(*shards: dict[str, Any], up: bool = True, fsync: Any = None,
         ready: bool | None = True, hosts: tuple[int, ...] = (0,)) -> dict[str, Any]:
    s: dict[str, Any] = {"up": up, "region": "eu", "hosts": list(hosts)}
    if up:
        s.update(shards=list(shards), ready=ready, not_ready="" if ready else "catching up",
                 fsync=fsync)
    return s


def hist(*counts: float) -> dict[str, Any]:
    """Cumulative buckets at 1 ms, 10 ms, 100 ms and +Inf."""
    les = (0.001, 0.01, 0.1, INF)
    return {"buckets": [[le, c] for le, c in zip(les, counts, strict=True)],
            "count": counts[-1]}


BEFORE = {"cluster": "graphrep-test", "time": 10.0, "nodes": {
    "n1": node(shard(0, "leader", 2, 100, 100), fsync=hist(10, 10, 10, 10)),
    "n2": node(shard(0, "follower", 2, 90, 90), fsync=hist(5, 5, 5, 5)),
    "n3": node(shard(0, "follower", 2, 100, 100), fsync=hist(1, 2, 3, 3))}}

AFTER = {"cluster": "graphrep-test", "time": 12.0, "nodes": {
    # 100 commits in (1 ms, 10 ms] since BEFORE
    "n1": node(shard(0, "leader", 2, 140, 141), fsync=hist(10, 110, 110, 110)),
    # 15 entries behind the leader's commit (140 - 125)
    "n2": node(shard(0, "follower", 2, 130, 125), fsync=hist(5, 5, 105, 105),
               ready=False),
    "n3": node(up=False)}}


def test_a_frame_from_two_snapshots_rates_lag_and_a_node_down():
    rows = cells(top.render(AFTER, BEFORE))
    assert [r["node"] for r in rows] == ["n1", "n2", "n3"]
    n1, n2, n3 = rows
    assert n1 == {"node": "n1", "region": "eu", "state": "up", "ready": "yes", "shard": "0",
                  "role": "leader", "term": "2", "commit": "140", "applied": "141",
                  "lag": "0", "writes/s": "20.0", "fsync p99": "9.91 ms"}
    # (130 - 90) / 2 s; p99 of 100 commits in (10 ms, 100 ms]: 10 + 90 * 0.99 ms
    assert (n2["ready"], n2["lag"], n2["writes/s"], n2["fsync p99"]) == (
        "no", "15", "20.0", "99.1 ms")
    assert n3["state"] == "down" and n3["shard"] == "0"
    assert {n3[c] for c in top.COLUMNS[5:]} == {"-"} and n3["ready"] == "-"
    caption = str(top.render(AFTER, BEFORE).caption)
    assert "2 of 3 nodes up" in caption and "over the last 2.0 s" in caption
    assert "n2 not ready: catching up" in caption
    assert "not a client's write latency" in caption


def test_the_first_frame_has_no_rates_and_the_fsync_p99_since_each_node_started():
    rows = cells(top.render(BEFORE))
    assert {r["writes/s"] for r in rows} == {"-"}
    # n1: 10 commits all within 1 ms: 99% of them by 0.99 ms
    assert [r["fsync p99"] for r in rows] == ["0.99 ms", "0.99 ms", "97.3 ms"]
    assert [r["lag"] for r in rows] == ["0", "10", "0"]  # n2: 100 - 90
    assert "since each node started" in str(top.render(BEFORE).caption)


def test_no_leader_no_lag_and_no_commits_no_fsync_p99():
    snap = {"time": 3.0, "nodes": {
        "n1": node(shard(0, "candidate", 5, 7, 7), fsync=hist(1, 1, 1, 1), ready=False),
        "n2": node(shard(0, "follower", 4, 7, 6), fsync=None)}}
    prev = {"time": 2.0, "nodes": {"n1": node(shard(0, "follower", 4, 7, 7),
                                              fsync=hist(1, 1, 1, 1))}}
    rows = cells(top.render(snap, prev))
    assert [r["lag"] for r in rows] == ["-", "-"]
    # n1 made no commit in the window; n2's endpoint did not answer; n2 had no prev
    assert [r["fsync p99"] for r in rows] == ["-", "-"]
    assert [r["writes/s"] for r in rows] == ["0.0", "-"]


def test_a_restarted_node_and_several_shards():
    before = {"time": 0.0, "nodes": {
        "n1": node(shard(0, "leader", 1, 50, 50), shard(1, "follower", 1, 30, 30),
                   fsync=hist(0, 500, 500, 500), hosts=(0, 1))}}
    # restarted: its histogram starts again from zero, so the window is all of it
    after = {"time": 1.0, "nodes": {
        "n1": node(shard(0, "follower", 2, 60, 40), shard(1, "leader", 2, 35, 35),
                   fsync=hist(0, 0, 0, 4), hosts=(0, 1))}}
    rows = cells(top.render(after, before))
    assert [(r["shard"], r["role"], r["writes/s"]) for r in rows] == [
        ("0", "follower", "10.0"), ("1", "leader", "5.0")]
    assert [r["lag"] for r in rows] == ["-", "0"]  # no answering leader of shard 0
    assert {r["fsync p99"] for r in rows} == {">100 ms"}  # past the largest bucket


def test_write_p99_only_where_the_nodes_time_client_requests():
    assert "write p99" not in [str(c.header) for c in top.render(AFTER, BEFORE).columns]
    before = {"time": 0.0, "nodes": {
        "n1": node(shard(0, "leader", 1, 10, 10), fsync=hist(1, 1, 1, 1)),
        "n2": node(shard(0, "follower", 1, 10, 10), fsync=hist(1, 1, 1, 1))}}
    before["nodes"]["n1"]["writes"] = hist(0, 0, 10, 10)
    before["nodes"]["n2"]["writes"] = hist(0, 0, 0, 0)
    after = {"time": 1.0, "nodes": {
        "n1": node(shard(0, "leader", 1, 110, 110), fsync=hist(1, 101, 101, 101)),
        "n2": node(shard(0, "follower", 1, 110, 110), fsync=hist(1, 101, 101, 101)),
        "n3": node(up=False)}}
    # 100 writes answered since before, all in (1 ms, 10 ms]; n2 answered none
    after["nodes"]["n1"]["writes"] = hist(0, 100, 110, 110)
    after["nodes"]["n2"]["writes"] = hist(0, 0, 0, 0)
    table = top.render(after, before)
    rows = cells(table)
    assert [r["write p99"] for r in rows] == ["9.91 ms", "-", "-"]
    assert [r["fsync p99"] for r in rows] == ["9.91 ms", "9.91 ms", "-"]
    assert top.REQUESTS in str(table.caption)


class _Metrics(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def serve(body: bytes) -> tuple[http.server.HTTPServer, str]:
    handler = type("Handler", (_Metrics,), {"body": body})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/metrics"


def test_histograms_read_from_a_metrics_endpoint():
    registry = CollectorRegistry()
    fsync = Histogram(top.FSYNC, "commits", buckets=(0.001, 0.01), registry=registry)
    requests = Histogram(top.REQUESTS, "requests", ["op", "status"],
                         buckets=(0.001, 0.01), registry=registry)
    for seconds in (0.0005, 0.005, 0.005, 0.5):
        fsync.observe(seconds)
    requests.labels("insert", "ok").observe(0.0005)
    requests.labels("delete", "ok").observe(0.005)
    requests.labels("insert", "busy").observe(0.0001)  # not answered ok: left out
    requests.labels("search", "ok").observe(0.0001)  # not a write: left out
    server, url = serve(generate_latest(registry))
    try:
        got = top.histograms(url)
    finally:
        server.shutdown()
        server.server_close()
    assert got["fsync"] == {"buckets": [[0.001, 1], [0.01, 3], [INF, 4]], "count": 4}
    assert got["writes"] == {"buckets": [[0.001, 1], [0.01, 2], [INF, 2]], "count": 2}
    # an older node without the request histogram, and a node that does not answer
    server, url = serve(generate_latest(CollectorRegistry()))
    try:
        assert top.histograms(url) == {"fsync": None, "writes": None, "lag": None}
    finally:
        server.shutdown()
        server.server_close()
    assert top.histograms(url, timeout=0.5) == {"fsync": None, "writes": None, "lag": None}


def test_quantile_interpolates_within_a_bucket():
    buckets = [[0.001, 50], [0.01, 100], [INF, 100]]
    assert top.quantile(0.5, buckets) == pytest.approx(0.001)
    assert top.quantile(0.75, buckets) == pytest.approx(0.0055)
    assert top.quantile(0.99, [[0.001, 0], [INF, 0]]) is None
    assert top.p99_text([[0.001, 0], [INF, 0]]) == "-"
    assert top.p99_text([[0.001, 1], [0.5, 1], [INF, 2]]) == ">500 ms"


def test_the_live_view_refreshes_survives_a_failed_refresh_and_exits_0_on_ctrl_c(
        monkeypatch):
    snaps = [dict(BEFORE), RuntimeError("nobody home"), dict(AFTER)]
    frames: list[Any] = []
    sleeps = []

    def snapshot(directory: Any) -> dict[str, Any]:
        item = snaps.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not snaps:
            raise KeyboardInterrupt

    real_update = top.Live.update

    def update(self: Any, renderable: Any, *, refresh: bool = False) -> None:
        frames.append(renderable)
        real_update(self, renderable, refresh=refresh)

    monkeypatch.setattr(top, "snapshot", snapshot)
    monkeypatch.setattr(top.time, "sleep", sleep)
    monkeypatch.setattr(top.Live, "update", update)
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=True)
    assert top.run("somewhere", interval=0.5, console=console) == 0
    assert len(sleeps) == 3 and all(0 <= s <= 0.5 for s in sleeps)
    assert "refresh failed: nobody home" in str(frames[0].caption)
    assert [r["writes/s"] for r in cells(frames[1])] == ["20.0", "20.0", "-"]
    assert "n3" in out.getvalue() and "down" in out.getvalue()


# ---------------------------------------------------------------- three processes


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    from graphrep.net.node import warm_up

    warm_up(DIM)  # compile (or load) the kernels once, before the nodes do


def frame_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """(node, shard) -> the row's cells, from a printed frame."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in ("n1", "n2", "n3"):
            out[words[0], words[4]] = words
    return out


def settled(directory: Path) -> dict[str, Any]:
    """The cluster's status once every replica has committed and applied the same."""
    deadline = time.monotonic() + 10
    while True:
        st = local.status(directory, digest=False)
        positions = {(row["commit"], row["applied"]) for s in st["nodes"].values()
                     for row in s.get("shards", [])}
        if len(positions) == 1 and all(s["up"] for s in st["nodes"].values()):
            return st
        assert time.monotonic() < deadline, positions
        time.sleep(0.05)


def test_once_against_three_node_processes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    with LocalCluster(tmp_path / "c", nodes=3, dim=DIM) as cluster:
        with SyncClient.from_config(cluster.config_path, timeout=20) as client:
            for i in range(12):
                client.insert(i, rng.standard_normal(DIM).astype(np.float32))
        st = settled(cluster.dir)
        commit = st["nodes"]["n1"]["shards"][0]["commit"]
        assert commit >= 12
        capsys.readouterr()
        assert main(["top", "--dir", str(cluster.dir), "--once"]) == 0
        text = capsys.readouterr().out
        rows = frame_rows(text)
        assert sorted(rows) == [("n1", "0"), ("n2", "0"), ("n3", "0")], text
        assert [r[5] for r in rows.values()].count("leader") == 1, text
        for words in rows.values():
            # state ready role term commit applied lag writes/s fsync p99
            assert words[2:4] == ["up", "yes"], text
            assert (words[7], words[8], words[9], words[10]) == (
                str(commit), str(commit), "0", "-"), text
            assert words[11].replace(".", "").isdigit() and words[12] == "ms", text
            if "write p99" in text:  # where the nodes time client requests
                assert words[13:] in (["-"], [words[13], "ms"]), text
        assert "3 of 3 nodes up" in text

        follower = sorted(n for n, s in rows.items() if s[5] != "leader")[0][0]
        cluster.kill(follower)
        assert main(["top", "--dir", str(cluster.dir), "--once"]) == 1  # as status does
        rows = frame_rows(capsys.readouterr().out)
        assert rows[follower, "0"][2] == "down"
        assert sum(r[2] == "up" for r in rows.values()) == 2
