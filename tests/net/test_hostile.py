"""Hostile input to a live node over real TCP (127.0.0.1, a port chosen by the OS).

Raw connections (``trio.open_tcp_stream``) send a node what no graphrep client or node
would: garbage, a length prefix over the limit (only the 4-byte header: the node must
refuse it without waiting for, or allocating, the body), a frame cut short, hellos it
must refuse (another wire version, another cluster, an unknown role or secret, a node
that is not in the cluster file), malformed and non-canonical messages after a good
hello, replication messages from a client, frames that stall, silence; and, with
Hypothesis, arbitrary bytes with and without a client hello first.

After each, the connection has been closed by the node (or refused with a reason that
names what is wrong), the node counts it (``refused_hellos``, ``frame_errors`` and
``frame_error:<Kind>``, ``connection_timeouts``), and

* the store is unchanged: the one-node cluster's durable map, its commit count, the
  bytes of its SQLite files and the replica's term, log end, commit and index digest are
  what they were before the hostile input (a one-node cluster, replication 1, writes
  nothing while idle, so any change is the hostile input's);
* the node keeps serving: a client connection opened before the hostile input is still
  the same connection and still inserts and searches, a raw control connection opened
  before still answers ``ping``, and a new client inserts and finds what it inserted.

A three-node cluster gets the same inputs on every node and keeps its leader and term.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphrep.ann import VamanaIndex
from graphrep.errors import (
    AuthenticationFailed,
    ConfigError,
    HandshakeRefused,
    InvalidArgument,
    PermissionDenied,
)
from graphrep.net import Client, ClusterFile, NodeSpec, build_node, status_of
from graphrep.net.driver import NodeDriver
from graphrep.net.handshake import dial, proof, secrets_in
from graphrep.net.node import warm_up
from graphrep.net.transport import TCPTransport
from graphrep.net.wire import (
    HEADER,
    NONCE_BYTES,
    WIRE_VERSION,
    Challenge,
    FrameReader,
    Hello,
    control,
    decode_challenge,
    decode_control,
    decode_welcome,
    encode_auth,
    encode_hello,
    frame,
    is_control,
)
from graphrep.protocol.messages import (
    DELTA,
    Append,
    ClientSearch,
    ClientWrite,
    RequestVote,
    Snapshot,
    decode,
    encode,
)
from graphrep.spec.profiles import scaled_examples

DIM = 8
CLUSTER = "graphrep-hostile"
LIMIT = 1 << 20
LIMITS = {"hello_timeout": 0.5, "idle_timeout": 5.0, "frame_timeout": 0.5,
          "max_frame_bytes": LIMIT}
CLOSE_WITHIN = 3.0
"""Seconds a test waits for the node to close a connection it must close (timeouts are
0.5 s; the idle timeout, 5 s, is what a frame that stalls must not wait for)."""


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    warm_up(DIM)  # compile (or load) the index kernels before any timeout matters


def cluster_file(data: Path, names: tuple[str, ...] = ("n1",), cluster: str = CLUSTER,
                 **limits: Any) -> ClusterFile:
    return ClusterFile(cluster=cluster, data_dir=data, dim=DIM, replication=len(names),
                       nodes={n: NodeSpec(n, "127.0.0.1:0") for n in names},
                       shards={0: ("local",)}, limits={**LIMITS, **limits},
                       security=secrets_in(data.parent / "secrets"))


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def client_hello(name: str = "raw", cluster: str = CLUSTER, role: str = "write") -> bytes:
    return frame(encode_hello(Hello(WIRE_VERSION, cluster, name, role,
                                    b"\x07" * NONCE_BYTES)))


async def until_closed(stream: trio.abc.Stream, within: float = CLOSE_WITHIN) -> bytes:
    """What the node sends until it closes the connection (a reset counts as closed);
    fails if it does not close it within ``within`` seconds."""
    got = bytearray()
    with trio.fail_after(within):
        try:
            while chunk := await stream.receive_some(65536):
                got += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    return bytes(got)


async def send(stream: trio.abc.Stream, data: bytes, eof: bool = False) -> None:
    """Send what a hostile peer sends; the node may already have closed the connection."""
    try:
        await stream.send_all(data)
        if eof:
            await stream.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def frames_of(data: bytes) -> list[bytes]:
    """The frame bodies in ``data`` (what a node sent before closing)."""
    out = []
    while len(data) >= HEADER.size:
        (n,) = HEADER.unpack_from(data)
        out.append(data[HEADER.size:HEADER.size + n])
        data = data[HEADER.size + n:]
    assert not data, "the node sent a frame cut short"
    return out


def challenge_of(body: bytes) -> Challenge:
    """A challenge as sent (decode_challenge raises on a refusal; here we look at it)."""
    tag, *fields = msgpack.unpackb(body, raw=False)
    assert tag == "graphrep-challenge"
    return Challenge(*fields)


class Node:
    """A running node of a test cluster, with what the tests ask of it."""

    def __init__(self, cfg: ClusterFile, driver: NodeDriver, tcp: TCPTransport) -> None:
        self.cfg, self.driver, self.tcp = cfg, driver, tcp
        self.ids = itertools.count(1000 * (1 + sorted(cfg.nodes).index(driver.name)))
        self._req = itertools.count(1)

    @property
    def name(self) -> str:
        return self.driver.name

    @property
    def replica(self) -> Any:
        return self.driver.process.replicas[0]

    def counters(self) -> dict[str, int]:
        status = status_of(self.driver)
        return {**status["counters"], "protocol_errors": status["protocol_errors"]}

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.tcp.bound[self.name])

    async def hello(self, name: str = "raw", token: str | None = None
                    ) -> tuple[trio.SocketStream, FrameReader]:
        """A raw connection that went through the handshake with a client token (the
        write token by default) and was welcomed."""
        token = token or self.cfg.client_token()
        stream = await self.connect()
        reader = await dial(stream, cluster=self.cfg.cluster, name=name, node=self.name,
                            role=token.split(".")[0], key=token.encode(),
                            timeout=CLOSE_WITHIN, max_frame_bytes=LIMIT)
        return stream, reader

    async def ping(self, stream: trio.abc.Stream, reader: FrameReader) -> None:
        """A control round trip on a raw client connection (it passes the node's loop:
        every input before it has been handled)."""
        req = next(self._req)
        await stream.send_all(frame(control("ping", req)))
        with trio.fail_after(CLOSE_WITHIN):
            while True:
                body = await reader.next()
                assert body is not None, "the node closed a good connection"
                if not is_control(body):
                    continue  # an answer to a request sent before
                reply = decode_control(body)
                if reply[2] == req:
                    assert reply[1] == "pong"
                    return

    async def settled(self) -> None:
        """Every input so far handled and every commit requested finished."""
        stream, reader = await self.hello(f"settle-{next(self._req)}")
        await self.ping(stream, reader)
        await stream.aclose()
        store = self.driver.store
        with trio.fail_after(CLOSE_WITHIN):
            while store.committing is not None or store.durable < store.requested:
                await trio.sleep(0.005)

    def state(self) -> dict[str, Any]:
        """What hostile input must not change: the durable map, the store's commits and
        files, the replica's position and index."""
        store, r = self.driver.store, self.replica
        files = hashlib.sha256()
        for suffix in ("", "-wal"):
            path = store.path.with_name(store.path.name + suffix)
            files.update(path.read_bytes() if path.exists() else b"absent")
        return {"disk": store.load(), "commits": store.commits, "files": files.hexdigest(),
                "replica": (r.role, r.term, r.end, r.commit, r.applied),
                "index": r.index.digest()}

    async def write_and_read(self, client: Client) -> None:
        """``client`` inserts a new id and finds it as its nearest neighbour."""
        id_ = next(self.ids)
        await client.insert(id_, vector(id_))
        ids, _ = await client.search(vector(id_), k=1)
        assert ids.tolist() == [id_]


@asynccontextmanager
async def running(cfg: ClusterFile) -> AsyncIterator[dict[str, Node]]:
    """Every node of ``cfg`` running over TCP, once one leads shard 0 and each has
    applied what it committed."""
    tcp = TCPTransport({n: s.address for n, s in cfg.nodes.items()})
    nodes: dict[str, Node] = {}
    try:
        async with trio.open_nursery() as nursery:
            for name in cfg.nodes:
                driver = build_node(cfg, name, transport=tcp)
                await nursery.start(driver.run)
                nodes[name] = Node(cfg, driver, tcp)

            def ready() -> bool:
                reps = [n.replica for n in nodes.values()]
                return (sum(r.role == "leader" for r in reps) == 1
                        and len({(r.term, r.commit) for r in reps}) == 1
                        and all(r.applied == r.commit == r.end for r in reps))

            with trio.fail_after(15):
                while not ready():
                    await trio.sleep(0.01)
            try:
                yield nodes
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # after the nursery has exited: a commit running in a worker thread has finished
        for node in nodes.values():
            node.driver.store.close()


@asynccontextmanager
async def one_node(tmp_path: Path, **limits: Any) -> AsyncIterator[Node]:
    async with running(cluster_file(tmp_path / "data", **limits)) as nodes:
        yield nodes["n1"]


@asynccontextmanager
async def unharmed(node: Node) -> AsyncIterator[dict[str, int]]:
    """Around hostile input: yields the counters' changes (filled in on exit), and checks
    on exit that the store is unchanged and the node still serves."""
    async with Client(node.cfg, name="good", timeout=5, transport=node.tcp) as good:
        await node.write_and_read(good)  # connected before the hostile input
        good_conn = node.driver.clients["good"]
        raw, reader = await node.hello("good-raw")
        await node.ping(raw, reader)
        await node.settled()
        before, counted = node.state(), node.counters()
        changes: dict[str, int] = {}
        yield changes

        await node.settled()
        after = node.counters()
        changes.update({k: v - counted.get(k, 0) for k, v in after.items()
                        if v != counted.get(k, 0)})
        assert node.state() == before, f"hostile input changed the store ({changes})"
        # the connections opened before still work, as themselves
        await node.ping(raw, reader)
        assert node.driver.clients["good"] is good_conn
        await node.write_and_read(good)
        assert node.driver.clients["good"] is good_conn
        await raw.aclose()
    async with Client(node.cfg, name="new", timeout=5, transport=node.tcp) as new:
        await node.write_and_read(new)


def only(changes: dict[str, int], **expected: int) -> None:
    """The counters that changed are exactly ``expected`` (connection counts aside)."""
    assert {k: v for k, v in changes.items() if k in _HOSTILE} == expected


_HOSTILE = {"protocol_errors", "refused_hellos", "refused_handshakes", "denied_writes",
            "abandoned_handshakes",
            "frame_errors", "connection_timeouts",
            "dropped_sends", "frame_error:FrameError", "frame_error:MalformedMessage",
            "frame_error:UnsupportedVersion", "frame_error:OversizedMessage"}


def _frame_error(kind: str = "FrameError") -> dict[str, int]:
    return {"frame_errors": 1, f"frame_error:{kind}": 1}


# ---------------------------------------------------------------------- before the hello

GARBAGE = {
    # "GET " read as a length is 1.2 GB: over the limit from the header alone
    "http request": b"GET / HTTP/1.1\r\nHost: n1\r\n\r\n",
    "tls client hello": bytes.fromhex("160301020001000200") + bytes(64),
    "junk frame": frame(b"\xde\xad\xbe\xef" * 8),
    "empty frame": frame(b""),
    "msgpack but not a hello": frame(msgpack.packb(["graphrep", WIRE_VERSION])),
    "hello with a bad name": frame(msgpack.packb(
        ["graphrep", WIRE_VERSION, CLUSTER, "", "client", b""], use_bin_type=True)),
    "hello with a huge name": frame(msgpack.packb(
        ["graphrep", WIRE_VERSION, CLUSTER, "x" * 5000, "client", b""], use_bin_type=True)),
    "a message instead of a hello": frame(encode(ClientWrite(
        0, 1, "insert", 5, vector(5).tobytes(), "one"))),
    "a control frame instead of a hello": frame(control("status", 1)),
}


@pytest.mark.trio
@pytest.mark.parametrize("eof", [False, True], ids=["open", "eof"])
@pytest.mark.parametrize("data", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_instead_of_a_hello_is_closed_unanswered(tmp_path, data, eof):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await node.connect()
        started = time.monotonic()
        await send(stream, data, eof)
        assert await until_closed(stream) == b""  # not even a welcome
        assert time.monotonic() - started < 0.45  # refused at once, not timed out
    only(changes, **_frame_error())


async def opened(node, after_hello: bool) -> trio.SocketStream:
    """A raw connection to ``node``, after a client's hello if ``after_hello``."""
    if after_hello:
        stream, _ = await node.hello()
        return stream
    return await node.connect()


@pytest.mark.trio
@pytest.mark.parametrize("after_hello", [False, True], ids=["before-hello", "after-hello"])
@pytest.mark.parametrize("length", [LIMIT + 1, 1 << 30, 2**32 - 1])
async def test_a_length_over_the_limit_is_refused_from_the_header_alone(tmp_path, length,
                                                                         after_hello):
    # Only the header is sent: a node that waited for the body would time out instead
    # (and count connection_timeouts), one that allocated it would hold a gigabyte.
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await opened(node, after_hello)
        started = time.monotonic()
        await send(stream, HEADER.pack(length))
        welcome = await until_closed(stream)
        assert time.monotonic() - started < 0.45
        assert welcome == b""
    only(changes, **_frame_error())


@pytest.mark.trio
async def test_a_frame_at_the_limit_is_read_and_then_refused_as_malformed(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream, _ = await node.hello()
        await send(stream, frame(b"\x00" * LIMIT))
        await until_closed(stream)
    only(changes, **_frame_error("MalformedMessage"))


CUT = {
    "inside the header": HEADER.pack(40)[:2],
    "after the header": HEADER.pack(40),
    "inside the body": HEADER.pack(40) + bytes(39),
}


@pytest.mark.trio
@pytest.mark.parametrize("after_hello", [False, True], ids=["before-hello", "after-hello"])
@pytest.mark.parametrize("data", CUT.values(), ids=CUT.keys())
async def test_a_frame_cut_short_by_the_end_of_the_stream(tmp_path, data, after_hello):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await opened(node, after_hello)
        await send(stream, data, eof=True)
        await until_closed(stream)
    only(changes, **_frame_error())


@pytest.mark.trio
@pytest.mark.parametrize("after_hello", [False, True], ids=["before-hello", "after-hello"])
async def test_a_frame_that_stalls_is_closed_after_the_frame_timeout(tmp_path, after_hello):
    # A frame that has started arriving gets frame_timeout (0.5 s) to finish, not the
    # idle timeout (5 s) of a connection between frames: a slow sender holds no
    # connection (and no half-filled buffer) for long.
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await opened(node, after_hello)
        started = time.monotonic()
        await send(stream, HEADER.pack(1000) + bytes(10))
        await until_closed(stream)
        assert 0.4 < time.monotonic() - started < 2.5
    only(changes, connection_timeouts=1)


@pytest.mark.trio
async def test_a_silent_connection_is_closed_after_the_hello_timeout(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await node.connect()
        started = time.monotonic()
        assert await until_closed(stream) == b""
        assert 0.4 < time.monotonic() - started < 2.5
    only(changes, connection_timeouts=1)


# ---------------------------------------------------------------------- refused hellos

N16 = b"\x07" * NONCE_BYTES
REFUSED = {
    "another wire version": (Hello(WIRE_VERSION + 1, CLUSTER, "c", "write", N16),
                             [f"wire version {WIRE_VERSION + 1}"]),
    "another cluster": (Hello(WIRE_VERSION, "other-cluster", "c", "write", N16),
                        ["cluster id 'other-cluster'", "another cluster file"]),
    "an unknown role": (Hello(WIRE_VERSION, CLUSTER, "c", "admin", N16), ["role 'admin'"]),
    "a nonce of the wrong size": (Hello(WIRE_VERSION, CLUSTER, "c", "write", b"n"),
                                  ["nonce is 1 bytes"]),
    "a node that is not in the cluster file": (Hello(WIRE_VERSION, CLUSTER, "n9", "node",
                                                     N16), ["'n9'", "not a node"]),
}


@pytest.mark.trio
@pytest.mark.parametrize(("hello", "words"), REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_hello_is_answered_with_the_reason_and_closed(tmp_path, hello,
                                                                      words):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream = await node.connect()
        # what a refused peer might send next is never read as a message
        follow = frame(encode(ClientWrite(0, 1, "insert", 5, vector(5).tobytes(), "one")))
        await send(stream, frame(encode_hello(hello)) + follow)
        (body,) = frames_of(await until_closed(stream))
        challenge = challenge_of(body)
        assert (challenge.version, challenge.ok, challenge.name, challenge.proof) == (
            WIRE_VERSION, False, "n1", b"")
        for word in words:
            assert word in challenge.reason
        with pytest.raises(HandshakeRefused, match="refused the connection") as refused:
            decode_challenge(body)
        assert all(word in str(refused.value) for word in words)
    only(changes, refused_hellos=1)


@pytest.mark.trio
async def test_a_client_of_another_cluster_is_refused_and_told_why(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        other = dataclasses.replace(node.cfg, cluster="other-cluster")
        async with Client(other, name="stranger", timeout=2, transport=node.tcp) as stranger:
            with pytest.raises(HandshakeRefused, match="cluster id 'other-cluster'"):
                await stranger.insert(1, vector(1))
            with pytest.raises(HandshakeRefused, match="another cluster file"):
                await stranger.search(vector(1), k=1)
    only(changes, refused_hellos=2)


# ---------------------------------------------------------------------- authentication


def wrong_token(role: str = "write") -> str:
    return f"{role}.{'0' * 64}"


@pytest.mark.trio
async def test_a_wrong_token_fails_the_proof_and_is_counted(tmp_path, caplog):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        async with Client(node.cfg, name="guess", timeout=2, transport=node.tcp,
                          token=wrong_token()) as guess:
            with pytest.raises(AuthenticationFailed, match="did not prove the write token"):
                await guess.insert(1, vector(1))
        # a dialer that skips checking the node's proof still cannot pass
        stream = await node.connect()
        await send(stream, client_hello("guess-raw"))
        reader = FrameReader(stream, LIMIT)
        with trio.fail_after(CLOSE_WITHIN):
            challenge = decode_challenge(await reader.next())
        await send(stream, frame(encode_auth(proof(wrong_token().encode(), "dialer", CLUSTER,
                                                   "guess-raw", "n1", "write", N16,
                                                   challenge.nonce))))
        (body,) = frames_of(await until_closed(stream))
        with pytest.raises(AuthenticationFailed, match="proof of the write token is wrong"):
            decode_welcome(body)
    # the client found the node's proof wrong and left without proving anything
    only(changes, abandoned_handshakes=1, refused_handshakes=1)
    logged = [r.getMessage() for r in caplog.records if "guess-raw" in r.getMessage()]
    assert logged and "127.0.0.1:" in logged[0]  # the peer's address, never a secret
    assert node.cfg.client_token() not in caplog.text


@pytest.mark.trio
async def test_a_recorded_handshake_replayed_later_is_refused(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        token = node.cfg.client_token().encode()

        async def handshake(auth: bytes | None) -> tuple[bytes, bytes]:
            """Say the recorded hello; send ``auth``, or a right proof for this
            connection's challenge; return (the proof sent, the node's answer)."""
            stream = await node.connect()
            await send(stream, client_hello("recorded"))
            reader = FrameReader(stream, LIMIT)
            with trio.fail_after(CLOSE_WITHIN):
                challenge = decode_challenge(await reader.next())
                if auth is None:
                    auth = proof(token, "dialer", CLUSTER, "recorded", "n1", "write", N16,
                                 challenge.nonce)
                await send(stream, frame(encode_auth(auth)))
                answer = await reader.next()
            await stream.aclose()
            assert answer is not None
            return auth, answer

        recorded, answer = await handshake(None)
        assert decode_welcome(answer).ok  # the original handshake passes
        _, answer = await handshake(recorded)  # the same frames, byte for byte, later
        with pytest.raises(AuthenticationFailed, match="replayed"):
            decode_welcome(answer)
    only(changes, refused_handshakes=1)


@pytest.mark.trio
async def test_a_read_token_may_search_but_not_write(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        read = node.cfg.security["read_token"].read_text().strip()
        async with Client(node.cfg, name="reader", timeout=2, transport=node.tcp,
                          token=read) as reader:
            ids, _ = await reader.search(vector(1), k=1)
            assert len(ids) == 1
            with pytest.raises(PermissionDenied, match="read token"):
                await reader.insert(77, vector(77))
            with pytest.raises(PermissionDenied):
                await reader.delete(int(ids[0]))
            assert (await reader.status())["nodes"]["n1"]["up"]
    only(changes, denied_writes=2)


def test_a_secret_file_that_others_may_read_stops_the_node_at_start(tmp_path):
    cfg = cluster_file(tmp_path / "data")
    cfg.security["cluster_key"].chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        build_node(cfg, "n1")
    cfg.security["cluster_key"].chmod(0o600)
    cfg.security["read_token"].write_text(wrong_token("write"))
    with pytest.raises(ConfigError, match="write token where the read token belongs"):
        build_node(cfg, "n1")


def test_a_token_that_names_no_role_is_refused_by_the_client(tmp_path):
    cfg = cluster_file(tmp_path / "data")
    with pytest.raises(InvalidArgument, match=r"'read\.<hex>' or 'write\.<hex>'"):
        Client(cfg, token="0123abcd")


# ---------------------------------------------------------------------- after a good hello

_WRITE = encode(ClientWrite(0, 1, "insert", 5, vector(5).tobytes(), "one"))
MALFORMED = {
    "not msgpack": (b"\xc1", "MalformedMessage"),
    "msgpack cut short": (_WRITE[:-3], "MalformedMessage"),
    "trailing bytes": (_WRITE + b"\x00", "MalformedMessage"),
    "a map": (msgpack.packb({"op": "insert"}), "MalformedMessage"),
    "an unknown message type": (msgpack.packb([1, 99, 0, 1]), "MalformedMessage"),
    "another protocol version": (msgpack.packb([2, 1, 0, 1]), "UnsupportedVersion"),
    "a field of the wrong type": (msgpack.packb([1, 1, "0", 1, "insert", 5, b"", "one"],
                                                use_bin_type=True), "MalformedMessage"),
    "a bool for an int": (msgpack.packb([1, 1, 0, True, "insert", 5, b"", "one"],
                                        use_bin_type=True), "MalformedMessage"),
    "not canonical (a wide int)": (_WRITE[:3] + b"\xcc\x00" + _WRITE[4:],
                                   "MalformedMessage"),
    "too many fields": (msgpack.packb([1, 3, 0, 1, b"", 1, 0, 0], use_bin_type=True),
                        "MalformedMessage"),
    "an array header claiming 2**32 items": (b"\xdd\xff\xff\xff\xff", "MalformedMessage"),
    "deep nesting": (b"\x91" * 5000 + b"\x01", "MalformedMessage"),
    "a control frame without a kind": (msgpack.packb([0, 7]), "FrameError"),
    "a control frame cut short": (control("ping", 1)[:-1] + b"\xdd", "FrameError"),
    "a control frame claiming 2**31 items": (b"\xdd\x7f\xff\xff\xff\x00", "FrameError"),
}


def test_the_non_canonical_example_differs_from_the_message_only_in_width():
    wide = MALFORMED["not canonical (a wide int)"][0]
    assert msgpack.unpackb(wide) == msgpack.unpackb(_WRITE) and wide != _WRITE


@pytest.mark.trio
@pytest.mark.parametrize(("body", "kind"), MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_message_closes_the_client_connection(tmp_path, body, kind):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream, _ = await node.hello()
        await send(stream, frame(body) + frame(_WRITE))  # the write after it is not read
        await until_closed(stream)
    only(changes, **_frame_error(kind))


def _forged_delta() -> bytes:
    index = VamanaIndex(DIM, "l2")
    return index.insert(4242, vector(4242)).to_bytes()


FROM_A_NODE = {
    # a heartbeat of a later term would depose the leader and bump the durable term
    "append heartbeat": lambda r: Append(0, r.term + 100, "raw", r.end, r.term, [], r.end),
    # an entry of a forged leader would be logged and applied: id 4242 in the index
    "append entry": lambda r: Append(0, r.term + 100, "raw", r.end, r.term,
                                     [(r.term + 100, DELTA, _forged_delta())], r.end + 1),
    "request vote": lambda r: RequestVote(0, r.term + 100, "raw", r.end + 10, r.term + 50),
    "snapshot": lambda r: Snapshot(0, r.term + 100, "raw", r.end + 10, r.term, 0, 8,
                                   bytes(8)),
}


@pytest.mark.trio
@pytest.mark.parametrize("make", FROM_A_NODE.values(), ids=FROM_A_NODE.keys())
async def test_a_client_cannot_send_replication_messages(tmp_path, make):
    # A client connection carries client requests only: the replication protocol
    # trusts a message's sender, and a client is not a replica.
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream, _ = await node.hello()
        await send(stream, frame(encode(make(node.replica))))
        await until_closed(stream)
        assert 4242 not in node.replica.index.ids().tolist()
    only(changes, **_frame_error())


BAD_REQUESTS = {
    "a vector of the wrong length": (ClientWrite(0, 1, "insert", 5, b"\x00" * 12, "one"),
                                     "error", "12 bytes"),
    "a NaN vector": (ClientWrite(0, 1, "insert", 5, np.full(DIM, np.nan, "<f4").tobytes(),
                                 "one"), "error", "NaN"),
    "an unknown op": (ClientWrite(0, 1, "drop", 5, b"", "one"), "error", "'drop'"),
    "an unknown concern": (ClientWrite(0, 1, "insert", 5, vector(5).tobytes(), "most"),
                           "error", "'most'"),
    "a search with k = 0": (ClientSearch(0, 1, vector(5).tobytes(), 0, 0), "error", "k "),
    "a search with a huge k": (ClientSearch(0, 1, vector(5).tobytes(), 2**62, 0), "error",
                               "k "),
    "a search for a later session": (ClientSearch(0, 1, vector(5).tobytes(), 5, 2**40),
                                     "stale", ""),
}


def _why(reply: Any) -> str:
    return reply.error if hasattr(reply, "error") else reply.ids.decode(errors="replace")


@pytest.mark.trio
@pytest.mark.parametrize(("msg", "status", "why"), BAD_REQUESTS.values(),
                         ids=BAD_REQUESTS.keys())
async def test_a_well_formed_bad_request_is_answered_and_the_connection_kept(tmp_path, msg,
                                                                             status, why):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream, reader = await node.hello()
        await send(stream, frame(encode(msg)))
        with trio.fail_after(CLOSE_WITHIN):
            reply = decode(await reader.next())
        assert (type(reply).__name__, reply.req, reply.status) == (
            type(msg).__name__.replace("Client", "") + "Reply", 1, status)
        assert why in _why(reply)
        await node.ping(stream, reader)  # still served on the same connection
        await stream.aclose()
    only(changes)


@pytest.mark.trio
async def test_requests_the_node_cannot_serve_are_counted_and_the_connection_kept(tmp_path):
    async with one_node(tmp_path) as node, unharmed(node) as changes:
        stream, reader = await node.hello()
        await send(stream, frame(encode(ClientWrite(7, 1, "insert", 5, vector(5).tobytes(),
                                                    "one"))))  # a shard it does not host
        await send(stream, frame(control("shutdown", 2)))
        with trio.fail_after(CLOSE_WITHIN):
            reply = decode_control(await reader.next())
        assert reply[1:3] == ["error", 2] and "unknown control request" in reply[3]
        await node.ping(stream, reader)
        await stream.aclose()
    only(changes, protocol_errors=1)  # UnknownShard: counted, unanswered, harmless


# ---------------------------------------------------------------------- arbitrary bytes

def _framed(body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return body.map(frame)


_ITEMS = st.one_of(st.integers(-2**63, 2**64 - 1), st.text(max_size=8), st.binary(max_size=16),
                   st.booleans(), st.none(), st.floats())
_MSGPACK = st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 16),
                     st.lists(_ITEMS, max_size=9)).map(
    lambda t: msgpack.packb([t[0], t[1], *t[2]], use_bin_type=True))
_CHUNKS = st.one_of(
    st.binary(max_size=64),
    _framed(st.binary(max_size=64)),
    _framed(_MSGPACK),
    st.integers(0, 2**32 - 1).map(HEADER.pack),
    st.just(client_hello("again")),
)
ARBITRARY = st.lists(_CHUNKS, max_size=6).map(b"".join)


@pytest.mark.trio
async def test_arbitrary_bytes_never_harm_a_node(tmp_path):
    # Each example connects (after a good client hello or not), sends the bytes, ends
    # the stream or not, and waits for the node to close the connection (at once, at
    # the end of the stream, or after a timeout); then the node answers a status
    # request on a new connection and its store is unchanged. Examples run in this
    # trio run (the node's): Hypothesis draws them in a worker thread.
    quick = {"hello_timeout": 0.25, "idle_timeout": 0.25, "frame_timeout": 0.25}
    async with one_node(tmp_path, **quick) as node:
        await node.settled()
        before = node.state()

        async def example(data: bytes, hello: bool, eof: bool) -> None:
            stream = (await node.hello("fuzz"))[0] if hello else await node.connect()
            await send(stream, data, eof)
            await until_closed(stream)
            status, reader = await node.hello("checker")
            req = next(node._req)
            await status.send_all(frame(control("status", req)))
            with trio.fail_after(CLOSE_WITHIN):
                reply = decode_control(await reader.next())
            assert reply[1:3] == ["status", req] and reply[3]["up"]
            await status.aclose()
            await node.settled()
            assert node.state() == before

        @settings(max_examples=scaled_examples(0.5), deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(data=ARBITRARY, hello=st.booleans(), eof=st.booleans())
        def examples(data: bytes, hello: bool, eof: bool) -> None:
            trio.from_thread.run(example, data, hello, eof)

        await trio.to_thread.run_sync(examples)
        counted = node.counters()
        assert counted.get("frame_errors", 0) + counted.get("connection_timeouts", 0) > 0


# ---------------------------------------------------------------------- three nodes

@contextmanager
def _no_new_terms(nodes: dict[str, Node]) -> Iterator[None]:
    leader = next(n for n, node in nodes.items() if node.replica.role == "leader")
    term = nodes[leader].replica.term
    yield
    assert {n.replica.term for n in nodes.values()} == {term}
    assert nodes[leader].replica.role == "leader"


@pytest.mark.trio
async def test_hostile_connections_to_every_node_of_a_cluster(tmp_path):
    cfg = cluster_file(tmp_path / "data", ("n1", "n2", "n3"))
    async with running(cfg) as nodes:
        with _no_new_terms(nodes):
            for node in nodes.values():
                counted = node.counters()
                inputs = [frame(encode_hello(REFUSED[why][0])) for why in REFUSED]
                inputs += [GARBAGE["http request"], HEADER.pack(2**32 - 1),
                           HEADER.pack(40) + bytes(3)]
                for data in inputs:
                    stream = await node.connect()
                    await send(stream, data, eof=True)
                    await until_closed(stream)
                for body in (b"\xc1", encode(FROM_A_NODE["append heartbeat"](
                        node.replica))):
                    stream, _ = await node.hello()
                    await send(stream, frame(body))
                    await until_closed(stream)
                after = node.counters()
                assert after.get("refused_hellos", 0) - counted.get("refused_hellos", 0) \
                    == len(REFUSED)
                assert after.get("frame_errors", 0) - counted.get("frame_errors", 0) == 5
            tcp = next(iter(nodes.values())).tcp
            async with Client(cfg, name="after", timeout=5, transport=tcp) as client:
                for node in nodes.values():
                    await node.write_and_read(client)
        assert all(status_of(n.driver)["protocol_errors"] == 0 for n in nodes.values())
