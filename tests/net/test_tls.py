"""TLS on every connection: three nodes in this process over real TCP with certificates
made by ``trustme``, a client writing and searching through TLS, a plaintext peer
refused (and counted) while the nodes serve on, a certificate the dialer does not
trust refused, and a TLS key that others may read stopping a node at start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trio
import trustme

from graphrep.errors import ConfigError, NoLeader
from graphrep.net import Client, ClusterFile, NodeSpec, build_node, status_of
from graphrep.net.handshake import generate
from graphrep.net.node import warm_up
from graphrep.net.transport import TCPTransport, TLSFiles
from graphrep.net.wire import NONCE_BYTES, WIRE_VERSION, Hello, encode_hello, frame

NAMES = ("n1", "n2", "n3")
DIM = 8


def tls_files(directory: Path, ca: trustme.CA | None = None) -> dict[str, Path]:
    """A CA and one certificate for 127.0.0.1, as PEM files (the key private)."""
    ca = ca or trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"ca": directory / "ca.pem", "cert": directory / "node.pem",
             "key": directory / "node.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(paths["cert"]), append=True)
    paths["key"].touch(mode=0o600)
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


def cluster(tmp_path: Path) -> ClusterFile:
    return ClusterFile(cluster="c-tls", data_dir=tmp_path / "data", dim=DIM,
                       nodes={n: NodeSpec(n, "127.0.0.1:0") for n in NAMES},
                       shards={0: ("local",)}, security=generate(tmp_path / "secrets"),
                       tls=tls_files(tmp_path / "tls"),
                       limits={"hello_timeout": 1.0})


@pytest.mark.trio
async def test_a_cluster_over_tls_refuses_a_plaintext_peer_and_serves_on(tmp_path):
    warm_up(DIM)
    cfg = cluster(tmp_path)
    tcp = cfg.transport()
    drivers = {n: build_node(cfg, n, transport=tcp) for n in NAMES}
    rng = np.random.default_rng(0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for d in drivers.values():
                await nursery.start(d.run)
            async with Client(cfg, transport=tcp, timeout=20, history=True) as client:
                for i in range(30):
                    await client.insert(i, rng.standard_normal(DIM).astype(np.float32))
                ids, _ = await client.search(rng.standard_normal(DIM), k=5)
                assert len(ids) == 5

                # a peer that speaks plaintext: its hello is never read as a frame
                plain = await trio.open_tcp_stream("127.0.0.1", tcp.bound["n1"])
                hello = Hello(WIRE_VERSION, "c-tls", "plain", "write", b"\0" * NONCE_BYTES)
                try:
                    await plain.send_all(frame(encode_hello(hello)))
                    got = await plain.receive_some(4096)
                except trio.BrokenResourceError:
                    got = b""
                assert not got.startswith(frame(b"")[:3])  # no frame: a TLS alert or EOF
                await plain.aclose()
                with trio.fail_after(5):
                    while not status_of(drivers["n1"])["counters"].get("tls_refused"):
                        await trio.sleep(0.01)

                # a dialer that does not trust the nodes' CA
                other = TCPTransport({n: s.address for n, s in cfg.nodes.items()},
                                     tls=TLSFiles(**tls_files(tmp_path / "other")))
                other.addresses = dict(tcp.addresses)
                async with Client(cfg, transport=other, timeout=1.5) as stranger:
                    with pytest.raises(NoLeader):
                        await stranger.insert(99, rng.standard_normal(DIM))

                for i in range(30, 40):  # the nodes serve on
                    await client.insert(i, rng.standard_normal(DIM).astype(np.float32))
            assert all(row["status"] == "ok" for row in client.history)
            assert status_of(drivers["n1"])["counters"]["tls_refused"] >= 2
            nursery.cancel_scope.cancel()
    for d in drivers.values():
        d.store.close()


def test_a_tls_key_others_may_read_stops_the_node(tmp_path):
    cfg = cluster(tmp_path)
    cfg.tls["key"].chmod(0o644)
    tcp = cfg.transport()  # a dialer needs only the CA

    async def serve() -> None:
        await tcp.serve("n1", lambda stream: trio.sleep(0))

    with pytest.raises(ConfigError, match="chmod 600"):
        trio.run(serve)


def test_tls_names_three_files(tmp_path):
    with pytest.raises(ConfigError, match="ca, cert and key"):
        ClusterFile(cluster="c", data_dir=tmp_path, dim=4, replication=1,
                    nodes={"n1": NodeSpec("n1", "127.0.0.1:0")}, shards={0: ("local",)},
                    tls={"ca": tmp_path / "ca.pem"})


def test_the_tls_section_survives_a_round_trip_through_the_file(tmp_path):
    cfg = cluster(tmp_path)
    back = ClusterFile.load(cfg.dump(tmp_path / "cluster.toml"))
    assert {k: v.resolve() for k, v in back.tls.items()} == {
        k: v.resolve() for k, v in cfg.tls.items()}
    assert {k: v.resolve() for k, v in back.security.items()} == {
        k: v.resolve() for k, v in cfg.security.items()}


def test_cluster_up_with_tls_runs_node_processes_over_tls(tmp_path):
    from graphrep.net import SyncClient
    from graphrep.net.local import LocalCluster, tls_dir

    tls_files(tmp_path / "tls")
    with LocalCluster(tmp_path / "c", nodes=3, dim=DIM, tls=tls_dir(tmp_path / "tls")
                      ) as cluster:
        cfg = ClusterFile.load(cluster.config_path)
        assert cfg.tls["ca"].resolve() == (tmp_path / "tls" / "ca.pem").resolve()
        with SyncClient.from_config(cluster.config_path) as c:
            for i in range(5):
                c.insert(i, np.full(DIM, i, dtype=np.float32))
            ids, _ = c.search(np.zeros(DIM, dtype=np.float32), k=1)
            assert ids.tolist() == [0]
        st = cluster.status()
        assert all(s["up"] for s in st["nodes"].values())
