"""Canonical encoding, trace hash and JSONL export."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphrep.errors import InvalidArgument
from graphrep.sim.trace import Digested, Trace, canonical_bytes, payload_digest
from tests.sim.protocols import faulty_gossip_run


@dataclass(frozen=True)
class Point:
    x: int
    y: tuple[int, ...]


def test_encoding_ignores_dict_and_set_order():
    assert canonical_bytes({"a": 1, "b": 2}) == canonical_bytes({"b": 2, "a": 1})
    assert canonical_bytes({"x", "y", "z"}) == canonical_bytes({"z", "x", "y"})
    assert canonical_bytes(frozenset({1, 2})) == canonical_bytes({2, 1})


def test_encoding_distinguishes_types_and_nesting():
    values = [1, 1.0, "1", b"1", True, None, (1,), [1, 2], [[1], 2], {1: 2}, {1},
              Point(1, (2,)), np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int64)]
    encoded = [canonical_bytes(v) for v in values]
    assert len(set(encoded)) == len(values)
    assert canonical_bytes((1, 2)) == canonical_bytes([1, 2])  # sequences are sequences


@given(st.recursive(st.none() | st.integers() | st.text() | st.floats(allow_nan=False),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c,
                                                                        max_size=3)))
def test_equal_values_encode_equally(value):
    assert canonical_bytes(value) == canonical_bytes(json.loads(json.dumps(value)))


def test_objects_with_addresses_are_refused():
    with pytest.raises(InvalidArgument):
        canonical_bytes(object())


def test_hash_and_jsonl():
    t = Trace()
    t.append((5, "send", "a", "b", {"k": 1}, None))
    t.append((9, "deliver", "a", "b", {"k": 1}, None))
    t.append((9, "timer", "a", None, None, ("tick", 1)))
    buf = io.StringIO()
    assert t.write_jsonl(buf) == 3
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert rows[0] == {"t": 5, "kind": "send", "src": "a", "dst": "b",
                       "digest": payload_digest({"k": 1}), "note": None}
    assert rows[2]["note"] == ["tick", 1]
    h = t.hash()
    assert len(h) == 64
    other = Trace()
    for r in t.records[:2]:
        other.append(r)
    other.append((9, "timer", "a", None, None, ("tick", 2)))
    assert other.hash() != h
    assert t.count("send") == 1


def test_digest_only_payloads_keep_the_hash_and_rows():
    """Payloads a ``trace_digest_only`` predicate picks are kept as their digests alone;
    the hash and the exported rows are the same as with every payload kept."""
    def big(payload):
        return len(payload[1]) > 8

    full, lean = faulty_gossip_run(3), faulty_gossip_run(3, digest_only=big)
    assert lean.trace.hash() == full.trace.hash()
    assert list(lean.trace.rows()) == list(full.trace.rows())
    kept = [r[4] for r in lean.trace.records if r[1] in ("send", "deliver", "duplicate")]
    digested = [p for p in kept if type(p) is Digested]
    assert digested and len(digested) < len(kept)  # the predicate picked some, not all
    assert not any(big(p) for p in kept if type(p) is not Digested)
    # a send and its delivery share one Digested (digested once)
    assert len({id(p) for p in digested}) < len(digested)


def test_digest_only_trace_digests_a_payload_seen_again_after_the_memo_forgot_it():
    t = Trace(digest_only=lambda p: isinstance(p, bytes))
    payloads = [bytes([i]) * 100 for i in range(200)]
    for i, p in enumerate(payloads):
        t.append((i, "send", "a", "b", p, None))
    t.append((999, "deliver", "a", "b", payloads[0], None))  # long evicted from the memo
    t.append((999, "timer", "a", None, b"not a message", None))
    assert t.records[-2][4].digest == payload_digest(payloads[0]) == t.records[0][4].digest
    assert t.records[0][4].nbytes == 100
    assert t.records[-1][4] == b"not a message"  # only message records are digested


def _reference_hash(trace: Trace) -> str:
    """The trace hash as its definition states it: canonical_bytes of each row's tuple."""
    import hashlib

    h = hashlib.blake2b(digest_size=32)
    for row in trace.rows():
        h.update(canonical_bytes(
            (row["t"], row["kind"], row["src"], row["dst"], row["digest"], row["note"])))
    return h.hexdigest()


_fields = st.none() | st.booleans() | st.integers(-5, 10**12) | st.text(max_size=5) \
    | st.tuples(st.text(max_size=3), st.integers(0, 9))
_payloads = st.none() | st.binary(max_size=40) | st.integers() | st.text(max_size=5) \
    | st.lists(st.integers(0, 9), max_size=3) | st.dictionaries(st.text(max_size=2),
                                                                 st.integers(0, 9), max_size=2)


@given(st.lists(st.tuples(st.integers(0, 10**12) | st.booleans(),
                          st.sampled_from(["send", "deliver", "drop", "timer", "crash"]),
                          _fields, _fields, _payloads,
                          st.none() | st.integers() | st.text(max_size=3)
                          | st.lists(st.integers(0, 9), max_size=2)),
                max_size=12))
def test_the_hash_written_out_equals_its_definition(records):
    """Trace.hash encodes the common field types inline (and bytes payloads without a
    copy): it must give the bytes canonical_bytes gives, for every field type."""
    t = Trace()
    for r in records:
        t.append(r)
    assert t.hash() == _reference_hash(t)
