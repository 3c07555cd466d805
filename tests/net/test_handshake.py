"""The cluster's secrets and the challenge-response that proves them: secret files made
private and refused when they are not, tokens that carry their role, and nodes that
hold another cluster key never joining (over an in-memory transport)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio
import trio.testing

from graphrep.errors import AuthenticationFailed, ConfigError, InvalidArgument
from graphrep.net import ClusterFile, NodeSpec, build_node
from graphrep.net.handshake import SECRET_FILES, Keys, dial, generate, proof, token_role
from graphrep.net.testing import MemoryTransport, autojump

NAMES = ("n1", "n2", "n3")


def test_generate_writes_private_secrets_and_never_over_old_ones(tmp_path):
    paths = generate(tmp_path / "secrets")
    assert sorted(paths) == sorted(SECRET_FILES)
    for path in paths.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = Keys.load(paths)
    assert keys.configured and len(keys.cluster_key) == 64
    assert {token_role(t.decode()) for t in keys.tokens.values()} == {"read", "write"}
    assert keys.key_for("write") != keys.key_for("read") != keys.key_for("node")
    assert keys.key_for("admin") is None
    with pytest.raises(ConfigError, match="exists"):
        generate(tmp_path / "secrets")
    assert Keys.load(paths) == keys  # untouched


def test_without_secrets_every_role_proves_the_empty_key():
    keys = Keys.load({})
    assert not keys.configured
    assert keys.key_for("node") == keys.key_for("read") == keys.key_for("write") == b""


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_secret_file_group_or_others_may_read_is_refused(tmp_path, mode):
    paths = generate(tmp_path)
    os.chmod(paths["write_token"], mode)
    with pytest.raises(ConfigError, match=f"chmod 600 {paths['write_token']}"):
        Keys.load(paths)


def test_missing_empty_or_misplaced_secrets_are_refused(tmp_path):
    paths = generate(tmp_path)
    with pytest.raises(ConfigError, match="names no read_token"):
        Keys.load({k: v for k, v in paths.items() if k != "read_token"})
    paths["cluster_key"].write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        Keys.load(paths)
    with pytest.raises(ConfigError, match="cannot read"):
        Keys.load({**paths, "cluster_key": tmp_path / "absent"})


@pytest.mark.parametrize("token", ["", "write", "write.", "admin.abcd", ".abcd", "abcd"])
def test_a_token_names_its_role(token):
    with pytest.raises(InvalidArgument):
        token_role(token)


def test_each_side_proves_something_different():
    args = ("c", "d", "n", "node", b"\x01" * 16, b"\x02" * 16)
    node, dialer = proof(b"k", "node", *args), proof(b"k", "dialer", *args)
    assert node != dialer and len(node) == 32
    assert proof(b"k", "node", *args[:-1], b"\x03" * 16) != node  # bound to the nonces
    assert proof(b"other", "node", *args) != node


def cluster(tmp_path: Path, secrets: dict[str, Path]) -> ClusterFile:
    return ClusterFile(cluster="c-auth", data_dir=tmp_path / "data", dim=8,
                       nodes={n: NodeSpec(n, "127.0.0.1:0") for n in NAMES},
                       shards={0: ("local",)}, security=secrets)


@pytest.mark.trio
async def test_a_node_holding_another_cluster_key_never_joins(tmp_path, mock_clock):
    good = cluster(tmp_path, generate(tmp_path / "good"))
    other = generate(tmp_path / "other")
    transport = MemoryTransport()
    drivers = {n: build_node(good, n, transport=transport) for n in ("n1", "n2")}
    stranger = cluster(tmp_path / "s", {**good.security, "cluster_key": other["cluster_key"]})
    drivers["n3"] = build_node(stranger, "n3", transport=transport)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(autojump, mock_clock)
        for d in drivers.values():
            await nursery.start(d.run)
        await trio.sleep(5)
        # n1 and n2 dial n3 and find that it cannot prove the key; n3 dials them and
        # finds the same, and leaves before it sends a proof of its own
        for name in ("n1", "n2"):
            assert drivers[name].counters["refused_by_peer"] >= 1
            assert drivers[name].counters["abandoned_handshakes"] >= 1
        assert drivers["n3"].counters["refused_by_peer"] >= 2
        replicas = {n: d.process.replicas[0] for n, d in drivers.items()}
        assert replicas["n3"].role != "leader" and replicas["n3"].commit == 0
        assert sum(r.role == "leader" for n, r in replicas.items() if n != "n3") == 1
        # a dialer of the right cluster key is welcomed by the same nodes
        stream = await transport.connect("probe", "n1")
        await dial(stream, cluster="c-auth", name="n3", node="n1", role="node",
                   key=good.keys().cluster_key, timeout=1)
        await stream.aclose()
        stream = await transport.connect("probe", "n1")
        with pytest.raises(AuthenticationFailed):
            await dial(stream, cluster="c-auth", name="n3", node="n1", role="node",
                       key=stranger.keys().cluster_key, timeout=1)
        nursery.cancel_scope.cancel()
    for d in drivers.values():
        d.store.close()
