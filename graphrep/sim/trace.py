"""The run's trace: every network and fault event, with a canonical hash and JSONL export.

Records are tuples ``(time_ns, kind, src, dst, payload, note)`` appended by the engine
in processing order. Payloads are kept by reference and digested only when the trace is
hashed or exported, which keeps the engine's hot loop to one tuple and one append per
record (payloads are values, see :mod:`graphrep.sansio`).

A run that sends large payloads nothing reads back (snapshot chunks, say) would keep
every one of them alive to the end. ``Trace(digest_only=pred)`` keeps a payload for which
``pred`` is true as a :class:`Digested` (its digest and size) instead: the hash and the
export are the same, and the memory is freed once the message is delivered.

The hash must not depend on the interpreter: the canonical encoding sorts dict items and
set elements by their own encoded bytes (a set's iteration order changes with
PYTHONHASHSEED), writes floats exactly (``float.hex``), and refuses objects whose repr
would embed a memory address.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import numpy as np

from graphrep.errors import InvalidArgument

__all__ = ["KINDS", "Digested", "Trace", "canonical_bytes", "payload_digest"]

KINDS = (
    "start", "send", "deliver", "drop", "duplicate", "timer", "crash", "restart",
    "pause", "resume", "partition", "heal", "hold", "release", "reorder", "clock", "network",
)

Record = tuple[int, str, Any, Any, Any, Any]


def _frame(tag: bytes, body: bytes) -> bytes:
    return tag + str(len(body)).encode() + b":" + body


def canonical_bytes(obj: Any) -> bytes:
    """A byte encoding of ``obj`` that is equal for equal values in any process."""
    if obj is None:
        return b"N"
    if obj is True:
        return b"T"
    if obj is False:
        return b"F"
    if isinstance(obj, enum.Enum):
        return _frame(b"e", f"{type(obj).__qualname__}.{obj.name}".encode())
    if isinstance(obj, int):
        return _frame(b"i", str(int(obj)).encode())
    if isinstance(obj, float):
        return _frame(b"f", float(obj).hex().encode())
    if isinstance(obj, str):
        return _frame(b"s", obj.encode("utf-8"))
    if isinstance(obj, bytes | bytearray | memoryview):
        return _frame(b"b", bytes(obj))
    if isinstance(obj, tuple | list):
        return _frame(b"l", b"".join(canonical_bytes(x) for x in obj))
    if isinstance(obj, Mapping):
        items = sorted(canonical_bytes(k) + canonical_bytes(v) for k, v in obj.items())
        return _frame(b"d", b"".join(items))
    if isinstance(obj, set | frozenset):
        return _frame(b"S", b"".join(sorted(canonical_bytes(x) for x in obj)))
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        head = f"{arr.dtype.str}{arr.shape}".encode()
        return _frame(b"a", _frame(b"h", head) + arr.tobytes())
    if isinstance(obj, np.generic):
        return canonical_bytes(obj.item())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
        return _frame(b"D", _frame(b"n", type(obj).__qualname__.encode())
                      + canonical_bytes(fields))
    text = repr(obj)
    if " at 0x" in text:
        raise InvalidArgument(
            f"cannot encode {type(obj).__qualname__} canonically (its repr holds an address); "
            "send plain values, tuples, dicts, sets, dataclasses or numpy arrays"
        )
    return _frame(b"r", _frame(b"n", type(obj).__qualname__.encode()) + text.encode())


def payload_digest(payload: Any) -> str:
    """A short hex digest of a payload (16 hex digits); a :class:`Digested` payload's is
    the digest it stands for."""
    if type(payload) is Digested:
        return payload.digest
    if type(payload) is bytes:  # a wire message: its frame fed in two parts, not copied
        h = hashlib.blake2b(b"b" + str(len(payload)).encode() + b":", digest_size=8)
        h.update(payload)
        return h.hexdigest()
    return hashlib.blake2b(canonical_bytes(payload), digest_size=8).hexdigest()


def _field_bytes(x: Any) -> bytes:
    """:func:`canonical_bytes` of one field of a trace row, the common types inline."""
    t = type(x)
    if t is str:
        return _frame(b"s", x.encode("utf-8"))
    if x is None:
        return b"N"
    if t is int:
        return _frame(b"i", str(x).encode())
    return canonical_bytes(x)


class Digested:
    """What a ``digest_only`` trace keeps of a payload: its :func:`payload_digest` and,
    for bytes, its length (``nbytes``; -1 for other values)."""

    __slots__ = ("digest", "nbytes")

    def __init__(self, digest: str, nbytes: int) -> None:
        self.digest, self.nbytes = digest, nbytes

    def __repr__(self) -> str:
        return f"Digested({self.digest!r}, {self.nbytes})"


_MESSAGE_KINDS = frozenset(("send", "deliver", "drop", "duplicate", "delay"))
_MEMO = 64  # payloads digested lately, so that a send and its delivery digest once


class Trace:
    """An append-only list of records; ``append`` is what the engine calls.

    ``digest_only``: a predicate over payloads; those it is true for are recorded as a
    :class:`Digested`. Without it ``append`` is the list's own (the engine's fast path).
    """

    __slots__ = ("_memo", "append", "digest_only", "records")

    def __init__(self, digest_only: Callable[[Any], bool] | None = None) -> None:
        self.records: list[Record] = []
        self.digest_only = digest_only
        # id(payload) -> (payload, Digested): holding the payload keeps its id unique
        self._memo: dict[int, tuple[Any, Digested]] = {}
        self.append = self.records.append if digest_only is None else self._append

    def _append(self, record: Record) -> None:
        payload = record[4]
        if record[1] in _MESSAGE_KINDS and self.digest_only(payload):  # type: ignore[misc]
            hit = self._memo.get(id(payload))
            if hit is None:
                nbytes = len(payload) if isinstance(payload, bytes | bytearray) else -1
                hit = (payload, Digested(payload_digest(payload), nbytes))
                if len(self._memo) >= _MEMO:
                    del self._memo[next(iter(self._memo))]
                self._memo[id(payload)] = hit
            record = (*record[:4], hit[1], record[5])
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def _digested(self) -> Iterator[tuple[Any, str, Any, Any, str | None, Any]]:
        """Records as ``(t, kind, src, dst, digest, note)``: a message's payload replaced
        by its digest (digested once for a send and its delivery), the note JSON-able."""
        memo: dict[int, str] = {}  # records keep payloads alive, so ids stay unique
        for time_ns, kind, src, dst, payload, note in self.records:
            digest = None
            if kind in _MESSAGE_KINDS:
                key = id(payload)
                digest = memo.get(key)
                if digest is None:
                    digest = memo[key] = payload_digest(payload)
            yield time_ns, kind, src, dst, digest, _note(note)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Records as JSON-able dicts, payloads replaced by their digest."""
        for time_ns, kind, src, dst, digest, note in self._digested():
            yield {"t": time_ns, "kind": kind, "src": src, "dst": dst,
                   "digest": digest, "note": note}

    def hash(self) -> str:
        """The canonical hash of the whole trace (64 hex digits): of each row (as
        :meth:`rows` gives it), :func:`canonical_bytes` of the tuple ``(t, kind, src, dst,
        digest, note)``, written out here for speed (a simulated run hashes a few
        hundred thousand rows)."""
        h = hashlib.blake2b(digest_size=32)
        field = _field_bytes
        for time_ns, kind, src, dst, digest, note in self._digested():
            body = (field(time_ns) + field(kind) + field(src) + field(dst)
                    + (b"N" if digest is None else _frame(b"s", digest.encode()))
                    + canonical_bytes(note))
            h.update(_frame(b"l", body))
        return h.hexdigest()

    def write_jsonl(self, fp: IO[str]) -> int:
        """Write one JSON object per record to ``fp``; returns the number written."""
        n = 0
        for row in self.rows():
            fp.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
            n += 1
        return n

    def count(self, kind: str) -> int:
        """How many records of one kind (a convenience for tests and summaries)."""
        return sum(1 for r in self.records if r[1] == kind)


def _note(note: Any) -> Any:
    """Notes are JSON scalars or (nested) lists of them; anything else becomes its repr."""
    if note is None or isinstance(note, bool | int | float | str):
        return note
    if isinstance(note, tuple | list):
        return [_note(x) for x in note]
    return repr(note)
