"""Limits and backpressure: a node at a limit answers ``busy`` at once (with a retry-after
hint) instead of queueing, counts it and serves on; clients retry with exponential
backoff and full jitter, so that clients sent away together do not come back together.

The node here runs a process that never answers a request, so requests stay in flight
for as long as a test needs (no race with a real replica's replies)."""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import pytest
import trio

from graphrep.errors import NodeBusy, NoLeader, RequestTimeout
from graphrep.net import Client, ClusterFile, NodeSpec, SQLiteStore
from graphrep.net.driver import DriverConfig, NodeDriver
from graphrep.net.handshake import dial
from graphrep.net.testing import MemoryTransport
from graphrep.net.wire import FrameReader, frame
from graphrep.protocol.messages import ClientSearch, ClientWrite, SearchReply, WriteReply, encode
from graphrep.protocol.messages import decode as decode_message
from graphrep.sansio import BaseProcess, Send

DIM = 4


class Silent(BaseProcess):
    """Takes every request and answers none, unless it is told to answer one."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_decoded(self, now: int, src: str, msg: Any) -> list:
        self.seen.append((src, msg))
        if type(msg) is ClientWrite and msg.op == "delete":  # the one it answers
            return [Send(src, encode(WriteReply(msg.shard, msg.req, "ok", 1, 1, "n1", "")))]
        return []


def config(tmp_path) -> ClusterFile:
    return ClusterFile(cluster="c-limits", data_dir=tmp_path / "data", dim=DIM,
                       replication=1, nodes={"n1": NodeSpec("n1", "127.0.0.1:0")},
                       shards={0: ("local",)})


def node(tmp_path, **limits: Any) -> tuple[NodeDriver, MemoryTransport, Silent]:
    process = Silent()
    transport = MemoryTransport()
    driver = NodeDriver("n1", lambda name, disk: process,
                        SQLiteStore(tmp_path / "store.sqlite3"), transport,
                        cluster="c-limits", peers=[], config=DriverConfig(**limits),
                        decode=lambda body, limit: decode_message(body))
    return driver, transport, process


async def raw_client(transport: MemoryTransport, name: str) -> tuple[Any, FrameReader]:
    stream = await transport.connect(name, "n1")
    reader = await dial(stream, cluster="c-limits", name=name, node="n1", role="write",
                        key=b"", timeout=2)
    return stream, reader


def write(req: int, op: str = "insert") -> bytes:
    return frame(encode(ClientWrite(0, req, op, req, np.ones(DIM, "<f4").tobytes(), "one")))


@pytest.mark.trio
async def test_requests_past_the_limits_are_answered_busy_at_once(tmp_path):
    driver, transport, process = node(tmp_path, max_requests_per_connection=2,
                                      max_requests=3, busy_retry_ms=40)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        a, ra = await raw_client(transport, "a")
        b, rb = await raw_client(transport, "b")
        await a.send_all(write(1) + write(2) + write(1))  # a retry of 1 is not one more
        await a.send_all(write(3))  # the connection's third: busy
        with trio.fail_after(2):
            reply = decode_message(await ra.next())
        assert type(reply) is WriteReply and (reply.req, reply.status) == (3, "busy")
        assert reply.seq == 40 and "max_requests_per_connection 2" in reply.error
        await b.send_all(write(4))  # the node's third
        search = frame(encode(ClientSearch(0, 5, np.ones(DIM, "<f4").tobytes(), 1, 0)))
        await b.send_all(search)  # the node's fourth: busy
        with trio.fail_after(2):
            reply = decode_message(await rb.next())
        assert type(reply) is SearchReply and (reply.req, reply.status) == (5, "busy")
        assert b"max_requests 3" in reply.ids and reply.seq == 40
        # an answered request leaves the count: a delete is answered, one more fits
        await b.send_all(write(6, "delete"))
        with trio.fail_after(2):
            assert decode_message(await rb.next()).status == "busy"  # still 3 in flight
        assert driver.counters["busy_replies"] == 3
        assert [m.req for _, m in process.seen] == [1, 2, 1, 4]  # busy ones never reach it
        # a connection that closes takes its requests with it
        await a.aclose()
        with trio.fail_after(2):
            while driver._requests != 1:
                await trio.sleep(0.01)
        await b.send_all(write(7, "delete"))
        with trio.fail_after(2):
            reply = decode_message(await rb.next())
        assert (reply.req, reply.status) == (7, "ok")
        nursery.cancel_scope.cancel()
    driver.store.close()


@pytest.mark.trio
async def test_requests_never_answered_expire(tmp_path):
    driver, transport, _ = node(tmp_path, max_requests=1, request_expiry=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        a, ra = await raw_client(transport, "a")
        await a.send_all(write(1) + write(2))
        with trio.fail_after(2):
            assert decode_message(await ra.next()).status == "busy"
        await trio.sleep(0.3)
        await a.send_all(write(3))  # write 1 expired: 3 is taken, unanswered
        with trio.move_on_after(0.3):
            await ra.next()
            pytest.fail("write 3 was answered")
        assert driver.counters["expired_requests"] == 1
        nursery.cancel_scope.cancel()
    driver.store.close()


@pytest.mark.trio
async def test_connections_past_the_limit_are_refused_busy_and_peers_do_not_count(tmp_path):
    driver, transport, _ = node(tmp_path, max_connections=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        first = [await raw_client(transport, name) for name in ("a", "b")]
        with pytest.raises(NodeBusy, match="max_connections 2"):
            await raw_client(transport, "c")
        assert driver.counters["busy_connections"] == 1
        assert driver.counters["refused_hellos"] == 0
        await first[0][0].aclose()
        with trio.fail_after(2):
            while True:  # the closed one's place is free again
                try:
                    await raw_client(transport, "c")
                    break
                except NodeBusy:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    driver.store.close()


@pytest.mark.trio
async def test_clients_sent_away_together_come_back_spread_out(tmp_path):
    """Sixteen clients write to a node that answers every request busy: each retries
    with a pause drawn from a doubling range (full jitter). Their first pauses are
    spread over the first range, not equal, and each client's pauses stay under the
    ceilings."""
    driver, transport, _ = node(tmp_path, max_requests=0, busy_retry_ms=10)
    cfg = config(tmp_path)
    rows: list[dict] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)

        async def one(seed: int) -> None:
            async with Client(cfg, transport=transport, timeout=0.4, history=True,
                              seed=seed) as client:
                with pytest.raises((NoLeader, RequestTimeout)):
                    await client.insert(seed, np.ones(DIM, np.float32))
                rows.extend(client.history)

        async with trio.open_nursery() as clients:
            for seed in range(16):
                clients.start_soon(one, seed)
        nursery.cancel_scope.cancel()
    driver.store.close()
    assert all(row["status"] == "failed" for row in rows) and len(rows) == 16
    firsts = [row["retries"][0] for row in rows]
    assert len(set(firsts)) == 16
    assert all(0 <= p <= 0.010 for p in firsts)  # the first range: the 10 ms hint
    assert statistics.pstdev(firsts) / statistics.mean(firsts) > 0.3  # uniform: 0.58
    for row in rows:
        assert len(row["retries"]) >= 3
        for n, pause in enumerate(row["retries"][:-1]):  # the last is cut by the timeout
            assert pause <= min(0.5, 0.010 * 2 ** n) + 1e-9
    assert driver.counters["busy_replies"] >= 16 * 3
