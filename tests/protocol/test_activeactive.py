"""The bookkeeping every active-active policy shares (graphrep.protocol.activeactive)."""

from __future__ import annotations

import pytest

from graphrep.errors import CorruptIndexFile
from graphrep.protocol.activeactive import Positions
from graphrep.protocol.config import ReplicaConfig
from graphrep.protocol.crdt import CrdtState


def test_positions_append_in_order_and_trim_from_the_front():
    w = Positions()
    for seq in range(1, 3001):
        w.add(seq, 10 * seq)
    assert len(w) == 3000 and w.get(1) == 10 and w.get(3000) == 30000 and w.get(3001) is None
    w.trim(20_005)  # the log now starts at 20005: entries 1..2000 are gone
    assert w.first == 2001 and len(w) == 1000
    assert w.get(2000) is None and w.get(2001) == 20010 and w.get(3000) == 30000
    assert list(w.items())[:2] == [(2001, 20010), (2002, 20020)]
    w.add(3001, 30010)
    assert w.get(3001) == 30010
    w.trim(10**9)  # everything gone: the next entry starts it again
    assert len(w) == 0 and w.get(3001) is None
    w.add(3002, 10**9 + 1)
    assert w.first == 3002 and w.get(3002) == 10**9 + 1


@pytest.mark.parametrize("seq, pos", [(5, 60), (3, 60), (4, 30)])
def test_positions_refuse_an_entry_out_of_order(seq, pos):
    w = Positions([(1, 10), (2, 20), (3, 50)])
    with pytest.raises(ValueError, match="logged in order"):
        w.add(seq, pos)
    assert list(w.items()) == [(1, 10), (2, 20), (3, 50)]


def test_a_state_keeps_its_positions_through_its_bytes_and_refuses_disordered_ones():
    import msgpack

    cfg = ReplicaConfig(replicas=("a",), dim=4, policy="crdt",
                        regions=(("eu", ("a",)), ("us", ("b",))), region="eu")
    st = CrdtState(cfg)
    st.where[1].add(7, 40)
    st.where[1].add(8, 41)
    back = CrdtState.from_bytes(cfg, st.to_bytes())
    assert [list(w.items()) for w in back.where] == [[], [(7, 40), (8, 41)]]
    f = msgpack.unpackb(st.to_bytes(), raw=False)
    f[3] = [[], [[8, 41], [7, 40]]]
    with pytest.raises(CorruptIndexFile):
        CrdtState.from_bytes(cfg, msgpack.packb(f, use_bin_type=True))
