"""The configuration's choices: StrEnums defined once, tuples derived from them, plain
strings stored."""

from __future__ import annotations

import json

import msgpack
import pytest

from graphrep.errors import ProtocolError
from graphrep.protocol import (
    CONCERNS,
    POLICIES,
    SYNC_POLICIES,
    Concern,
    Policy,
    ReplicaConfig,
    SyncPolicy,
)


def test_the_tuples_are_the_enum_values_as_plain_strings():
    assert POLICIES == ("leader", "replay", "snapshot")
    assert CONCERNS == ("one", "majority", "all")
    assert SYNC_POLICIES == ("always", "tick")
    for values, enum in ((POLICIES, Policy), (CONCERNS, Concern), (SYNC_POLICIES, SyncPolicy)):
        assert values == tuple(m.value for m in enum)
        assert all(type(v) is str for v in values)


def test_a_member_and_its_value_are_the_same_choice():
    assert Policy.LEADER == "leader" and hash(Concern.ALL) == hash("all")
    assert {"tick": 1}[SyncPolicy.TICK] == 1
    assert "gossip" not in POLICIES  # (``"gossip" in Policy`` raises in Python 3.11)


def test_a_config_stores_the_plain_value_whichever_spelling_was_given():
    by_member = ReplicaConfig(replicas=("a",), dim=4, policy=Policy.REPLAY,
                              sync=SyncPolicy.TICK)
    by_value = ReplicaConfig(replicas=("a",), dim=4, policy="replay", sync="tick")
    assert by_member == by_value and repr(by_member) == repr(by_value)
    assert type(by_member.policy) is str and type(by_member.sync) is str
    assert json.dumps(by_member.policy) == '"replay"'
    assert msgpack.packb(by_member.sync) == msgpack.packb("tick")


@pytest.mark.parametrize("bad", ["gossip", "", "Leader", None, 1])
def test_an_unknown_policy_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError, match=r"unknown policy .*'leader', 'replay', 'snapshot'"):
        ReplicaConfig(replicas=("a",), dim=4, policy=bad)
