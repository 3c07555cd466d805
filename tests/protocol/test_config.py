"""The configuration's choices: StrEnums defined once, tuples derived from them, plain
strings stored."""

from __future__ import annotations

import json

import msgpack
import pytest

from graphrep import protocol as p
from graphrep.errors import ProtocolError


def test_the_tuples_are_the_enum_values_as_plain_strings():
    assert p.POLICIES == ("leader", "replay", "snapshot", "crdt", "lww", "ordered")
    assert p.CONCERNS == ("one", "majority", "all")
    assert p.SYNC_POLICIES == ("always", "tick")
    for values, enum in ((p.POLICIES, p.Policy), (p.CONCERNS, p.Concern),
                         (p.SYNC_POLICIES, p.SyncPolicy)):
        assert values == tuple(m.value for m in enum)
        assert all(type(v) is str for v in values)


def test_a_member_and_its_value_are_the_same_choice():
    assert p.Policy.LEADER == "leader" and hash(p.Concern.ALL) == hash("all")
    assert {"tick": 1}[p.SyncPolicy.TICK] == 1
    assert "gossip" not in p.POLICIES  # (``"gossip" in p.Policy`` raises in Python 3.11)


def test_a_config_stores_the_plain_value_whichever_spelling_was_given():
    by_member = p.ReplicaConfig(replicas=("a",), dim=4, policy=p.Policy.REPLAY,
                              sync=p.SyncPolicy.TICK)
    by_value = p.ReplicaConfig(replicas=("a",), dim=4, policy="replay", sync="tick")
    assert by_member == by_value and repr(by_member) == repr(by_value)
    assert type(by_member.policy) is str and type(by_member.sync) is str
    assert json.dumps(by_member.policy) == '"replay"'
    assert msgpack.packb(by_member.sync) == msgpack.packb("tick")


@pytest.mark.parametrize("bad", ["gossip", "", "Leader", None, 1])
def test_an_unknown_policy_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError, match=r"unknown policy .*'leader', 'replay', 'snapshot'"):
        p.ReplicaConfig(replicas=("a",), dim=4, policy=bad)
