"""The wire form of an edge delta: Numba kernels that encode one delta and decode many.

Wire format (:meth:`graphrep.ann.delta.EdgeDelta.to_bytes`), version 3,
little endian. A varint is LEB128 (7 bits a byte, low bits first, shortest
form); zigzag maps signed to unsigned (0, -1, 1, -2 -> 0, 1, 2, 3)::

    header  "GRD1", u8 version (3), u8 op,
            varints: dim, seq, entry + 1, n_records, n_back, n_new, n_removed,
            n_values
    body    record ids   zigzag varints of successive differences
            tags         one byte per record: bits 0-1 kind, bit 2 deleted (else
                         live), bit 3 "the list (full) or the ids added (diff)
                         hold the first record's id", which is then not written
                         among the values; bits 4-7 the written lengths: full ->
                         0..14, 15 = longer; diff -> bits 4-5 removed and bits
                         6-7 added, 0..2 each, 3 = more
            lengths      varints, in record order, for every length marked
                         longer / more: its excess over 15 (full) or 3 (diff)
            values       (when any id is written) two bytes, the Rice parameters
                         k1 and k2 (0..62), then one bit stream, zero-padded to
                         a byte: per list (or diff part), its first written id
                         Rice coded with k1, then each next one as its
                         difference from the one before, with k2
            back-links   (when n_back > 0) a bitmap over the first record's list
            removed      zigzag varints of successive differences
            vectors      n_new x dim float32
    trailer u32 CRC-32 of everything before it

Ids are spread over the whole id space, so the differences between a list's
sorted ids are roughly geometric: a Rice code (``x >> k`` zero bits, a one bit,
then the low ``k`` bits of ``x``, bits taken from the low bit of each byte up)
with ``k`` near log2 of their mean spends about ``k + 2`` bits on each, where a
varint spends whole bytes (16 bits for a difference of a few thousand). The
encoder takes, for the first ids and for the differences each, the ``k`` among
the five around log2 of their mean that codes them shortest (ties to the
smaller): one rule, so that equal deltas give equal bytes. The decoder reads
any ``k``.

The first record of an insert's delta is the new node, and nearly every other
record is a neighbour list that gained a link to it: bit 3 says so in one bit
instead of a three-byte id. Most of those neighbours are in the new node's own
list, which the delta carries in full: such a record (live, a diff that only adds
the first id, at or after the new records) is a *back-link*, written as bit j of
a bitmap over that list (bit j of byte j // 8, from the low bit; padding bits
zero) and nothing else. ``n_records`` and ``n_values`` count what is written
out; the decoded delta has ``n_back`` more records, each with one more value.
Back-links are used only when the records after the first are in id order (as
an insert's are), so that the decoder puts each back in its place by id; a
delta with records out of order is written out whole.

``size_by_part`` counts the lengths, values and back-link bitmap as ``edges``,
the vectors as ``vector`` and the rest (header, record ids, tags, removed ids,
CRC) as ``metadata``. Version 2 (no ``n_back`` in the header, no back-links, each
list's ids as varints of differences) is still read; version 1 bytes (fixed
44-byte header) are rejected as an unknown version.

The kernels take arrays and scalars only: :func:`encode_kernel` writes one
delta into a byte buffer, :func:`decode_kernel` checks and decodes a batch of
deltas' bytes into concatenated arrays. The objects they serve
(:class:`~graphrep.ann.delta.EdgeDelta`, :class:`~graphrep.ann.delta.DeltaBatch`)
live in :mod:`graphrep.ann.delta`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FORMAT_VERSION = 3
READ_VERSIONS = (2, 3)  # what the decoder reads: 2 is 3 without back-links
MAGIC = b"GRD1"  # the same four bytes in every version; the version byte follows
_MAGIC = np.frombuffer(MAGIC, dtype=np.uint8).copy()

OPS = ("build", "insert", "delete", "consolidate", "repair")

KIND_NONE = 0  # flags only, list unchanged
KIND_FULL = 1  # the whole new list
KIND_DIFF = 2  # ids removed, then ids added

# bounds a decoder accepts before it allocates anything
MAX_DIM = 1 << 16
MAX_RECORDS = 1 << 26
MAX_VALUES = 1 << 31

FLAG_LIVE = 1
FLAG_DELETED = 2


# --------------------------------------------------------------------------- varints and CRC


def _crc_tables() -> np.ndarray:
    """Slice-by-8 tables of zlib's CRC-32 (reflected polynomial 0xEDB88320)."""
    t = np.zeros((8, 256), dtype=np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            t[k, i] = (int(t[k - 1, i]) >> 8) ^ int(t[0, int(t[k - 1, i]) & 0xFF])
    return t


_CRC = _crc_tables()


@njit(cache=True)
def crc32(buf, start, end):
    """zlib.crc32 of buf[start:end] (slice-by-8)."""
    t = _CRC
    crc = np.int64(0xFFFFFFFF)
    p = start
    while p + 8 <= end:
        one = crc ^ (np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)
                     | (np.int64(buf[p + 2]) << 16) | (np.int64(buf[p + 3]) << 24))
        crc = (t[7, one & 0xFF] ^ t[6, (one >> 8) & 0xFF] ^ t[5, (one >> 16) & 0xFF]
               ^ t[4, (one >> 24) & 0xFF] ^ t[3, buf[p + 4]] ^ t[2, buf[p + 5]]
               ^ t[1, buf[p + 6]] ^ t[0, buf[p + 7]])
        p += 8
    while p < end:
        crc = t[0, (crc ^ buf[p]) & 0xFF] ^ (crc >> 8)
        p += 1
    return crc ^ np.int64(0xFFFFFFFF)


@njit(inline="always")
def _put_varint(buf, pos, v):
    while v >= 0x80:
        buf[pos] = np.uint8((v & 0x7F) | 0x80)
        v >>= 7
        pos += 1
    buf[pos] = np.uint8(v)
    return pos + 1


@njit(inline="always")
def _zigzag(v):
    return np.uint64((v << 1) ^ (v >> 63))


@njit(inline="always")
def _get_varint(buf, pos, end):
    """Returns (value, new pos); pos = -1 on truncation or a non-shortest encoding."""
    if pos < end:
        b = buf[pos]
        if b < 0x80:
            return np.uint64(b), pos + 1
    v = np.uint64(0)
    shift = np.uint64(0)
    while True:
        if pos >= end:
            return np.uint64(0), -1
        b = np.uint64(buf[pos])
        pos += 1
        if shift == np.uint64(63) and b > np.uint64(1):
            return np.uint64(0), -1  # more than 64 bits
        v |= (b & np.uint64(0x7F)) << shift
        if b < np.uint64(0x80):
            if b == np.uint64(0) and shift > np.uint64(0):
                return np.uint64(0), -1  # overlong: a trailing zero group
            return v, pos
        shift += np.uint64(7)


@njit(inline="always")
def _then_varint(buf, pos, end):
    """:func:`_get_varint` after a read that may have failed (pos -1 stays -1)."""
    if pos < 0:
        return np.uint64(0), -1
    return _get_varint(buf, pos, end)


@njit(inline="always")
def _unzigzag(u):
    return np.int64(u >> np.uint64(1)) ^ -np.int64(u & np.uint64(1))


# --------------------------------------------------------------------------- encoding

# record tag byte
_KIND_MASK = 0x03
_TAG_DELETED = 0x04
_TAG_FIRST = 0x08  # the list / ids added hold ids[0], not written
_FULL_MORE = 15
_DIFF_MORE = 3

# why the encoder refused (in-memory deltas an index never makes)
ENC_OK = 0
ENC_FLAGS = 1
ENC_KIND = 2
ENC_COUNTS = 3
ENC_ORDER = 4
ENC_MESSAGES = {
    ENC_FLAGS: "record {i} has flags {v} (1 live or 2 deleted)",
    ENC_KIND: "record {i} has kind {v} (0 none, 1 full, 2 diff)",
    ENC_COUNTS: "record {i}'s counts do not match its kind or the values",
    ENC_ORDER: "record {i}'s list is not sorted by id or holds a negative id",
}


@njit(inline="always")
def _holds(values, lo, hi, x):
    """Index of the first ``x`` in the sorted values[lo:hi], or -1."""
    for t in range(lo, hi):
        if values[t] == x:
            return t
        if values[t] > x:
            return -1
    return -1


@njit(inline="always")
def _put_bits(buf, bit, v, nbits):
    """Write the low ``nbits`` of ``v`` (an int64 >= 0) at bit ``bit`` (low bits of each
    byte first) into a zeroed buffer; returns the next bit."""
    while nbits > 0:
        off = bit & 7
        take = min(8 - off, nbits)
        buf[bit >> 3] |= np.uint8((v & ((np.int64(1) << take) - 1)) << off)
        v >>= take
        nbits -= take
        bit += take
    return bit


@njit(inline="always")
def _put_rice(buf, bit, x, k):
    """Rice code of ``x`` >= 0 with parameter ``k``: ``x >> k`` zero bits, a one bit, then
    the low ``k`` bits of ``x``."""
    bit += x >> k  # the zero bits are already there
    buf[bit >> 3] |= np.uint8(1 << (bit & 7))
    return _put_bits(buf, bit + 1, x & ((np.int64(1) << k) - 1), k)


@njit(inline="always")
def _rice_cost(xs, n, k):
    """Bits of ``xs[:n]`` Rice coded with parameter ``k``."""
    c = np.int64(0)
    for t in range(n):
        c += (xs[t] >> k) + 1 + k
    return c


@njit(inline="always")
def _best_rice_k(xs, n):
    """The parameter that codes ``xs[:n]`` (>= 0) shortest among the five around log2
    of their mean, ties to the smaller (one rule, so that equal deltas give equal bytes;
    the decoder takes any). At most 9 bytes a value: the mean bounds the zero bits."""
    if n == 0:
        return 0
    total = 0.0
    for t in range(n):
        total += float(xs[t])  # in order, without fastmath: the same sum everywhere
    mean = total / n
    k0 = 0
    while k0 < 62 and 2.0 ** (k0 + 1) <= mean:
        k0 += 1
    best, best_cost = 0, np.int64(-1)
    for k in range(max(0, k0 - 2), min(62, k0 + 2) + 1):
        c = _rice_cost(xs, n, k)
        if best_cost < 0 or c < best_cost:
            best, best_cost = k, c
    return best


@njit(cache=True)
def encode_kernel(op, dim, seq, entry1, n_new, ids, flags, kinds, counts, values, removed,
                   vec, buf):
    """The whole wire form into ``buf``: returns (end, edges start, edges end, refusal
    code, record); refusal code 0 means encoded."""
    n = ids.shape[0]
    # refuse what the format cannot carry, before writing
    total = np.int64(0)
    for i in range(n):
        if flags[i] != FLAG_LIVE and flags[i] != FLAG_DELETED:
            return 0, 0, 0, ENC_FLAGS, i
        k = kinds[i]
        a = np.int64(counts[i, 0])
        b = np.int64(counts[i, 1])
        if k > KIND_DIFF:
            return 0, 0, 0, ENC_KIND, i
        if a < 0 or b < 0 or (k == KIND_NONE and a + b != 0) or (k == KIND_FULL and b != 0):
            return 0, 0, 0, ENC_COUNTS, i
        total += a + b
    if total != values.shape[0]:
        return 0, 0, 0, ENC_COUNTS, -1
    vp = 0
    for i in range(n):
        k = kinds[i]
        if k == KIND_NONE:
            continue
        parts = 1 if k == KIND_FULL else 2
        for part in range(parts):
            prev = np.int64(0)
            for _ in range(counts[i, part]):
                if values[vp] < prev:
                    return 0, 0, 0, ENC_ORDER, i
                prev = values[vp]
                vp += 1
    # back-links: records after the first that only gained the first record's id, and
    # whose own id is in the first record's (full) list, written as a bit of that list
    # (an insert's delta is mostly such records). Only when the records after the first
    # are in id order, so that the decoder can put them back in their places.
    back = np.full(n, -1, dtype=np.int64)  # the record's index in the first list
    n_back = 0
    if n >= 2 and kinds[0] == KIND_FULL:
        ordered = True
        for i in range(2, n):
            if ids[i] <= ids[i - 1]:
                ordered = False
                break
        m0 = np.int64(counts[0, 0])
        vp = m0
        for i in range(1, n):
            a = counts[i, 0]
            b = counts[i, 1]
            if (ordered and i >= n_new and flags[i] == FLAG_LIVE and kinds[i] == KIND_DIFF
                    and a == 0 and b == 1 and values[vp] == ids[0] and ids[i] != ids[0]):
                t = _holds(values, 0, m0, ids[i])
                if t >= 0:
                    back[i] = t
                    n_back += 1
            vp += a + b
    n_exp = n - n_back
    # header
    pos = 0
    for c in _MAGIC:
        buf[pos] = c
        pos += 1
    buf[pos] = FORMAT_VERSION
    buf[pos + 1] = op
    pos += 2
    pos = _put_varint(buf, pos, np.uint64(dim))
    pos = _put_varint(buf, pos, seq)
    pos = _put_varint(buf, pos, entry1)
    pos = _put_varint(buf, pos, np.uint64(n_exp))
    pos = _put_varint(buf, pos, np.uint64(n_back))
    pos = _put_varint(buf, pos, np.uint64(n_new))
    pos = _put_varint(buf, pos, np.uint64(removed.shape[0]))
    pos = _put_varint(buf, pos, np.uint64(values.shape[0] - n_back))
    # record ids
    prev = np.int64(0)
    for i in range(n):
        if back[i] >= 0:
            continue
        pos = _put_varint(buf, pos, _zigzag(ids[i] - prev))
        prev = ids[i]
    # tags, remembering which value each list leaves out
    first = ids[0] if n else np.int64(-1)
    skip = np.full(n, -1, dtype=np.int64)
    vp = 0
    for i in range(n):
        k = kinds[i]
        a = counts[i, 0]
        b = counts[i, 1]
        if back[i] >= 0:
            vp += a + b
            continue
        tag = np.int64(k)
        if flags[i] == FLAG_DELETED:
            tag |= _TAG_DELETED
        if k == KIND_FULL:
            s = _holds(values, vp, vp + a, first)
            if s >= 0:
                tag |= _TAG_FIRST
                a -= 1
            skip[i] = s
            tag |= min(a, _FULL_MORE) << 4
        elif k == KIND_DIFF:
            s = _holds(values, vp + a, vp + a + b, first)
            if s >= 0:
                tag |= _TAG_FIRST
                b -= 1
            skip[i] = s
            tag |= (min(a, _DIFF_MORE) << 4) | (min(b, _DIFF_MORE) << 6)
        buf[pos] = np.uint8(tag)
        pos += 1
        vp += counts[i, 0] + counts[i, 1]
    edges_start = pos
    # lengths that did not fit in the tag
    for i in range(n):
        if back[i] >= 0:
            continue
        k = kinds[i]
        w = 1 if skip[i] >= 0 else 0
        if k == KIND_FULL and counts[i, 0] - w >= _FULL_MORE:
            pos = _put_varint(buf, pos, np.uint64(counts[i, 0] - w - _FULL_MORE))
        elif k == KIND_DIFF:
            if counts[i, 0] >= _DIFF_MORE:
                pos = _put_varint(buf, pos, np.uint64(counts[i, 0] - _DIFF_MORE))
            if counts[i, 1] - w >= _DIFF_MORE:
                pos = _put_varint(buf, pos, np.uint64(counts[i, 1] - w - _DIFF_MORE))
    # values: each written part's first id, and the differences after it, Rice coded
    firsts = np.empty(2 * n, dtype=np.int64)  # one per written part, in order
    lens = np.empty(2 * n, dtype=np.int64)  # ids written per part
    gaps = np.empty(values.shape[0], dtype=np.int64)
    nf, ng = 0, 0
    vp = 0
    for i in range(n):
        k = kinds[i]
        a = counts[i, 0]
        b = counts[i, 1]
        if back[i] < 0 and k != KIND_NONE:
            for lo, hi, sk in ((vp, vp + a, skip[i] if k == KIND_FULL else -1),
                               (vp + a, vp + a + b, skip[i] if k == KIND_DIFF else -1)):
                prev = np.int64(-1)
                for t in range(lo, hi):
                    if t == sk:
                        continue
                    if prev < 0:
                        firsts[nf] = values[t]
                        lens[nf] = 0
                        nf += 1
                    else:
                        gaps[ng] = values[t] - prev
                        ng += 1
                    lens[nf - 1] += 1
                    prev = values[t]
        vp += a + b
    if nf:
        k1 = _best_rice_k(firsts, nf)
        k2 = _best_rice_k(gaps, ng)
        buf[pos] = np.uint8(k1)
        buf[pos + 1] = np.uint8(k2)
        pos += 2
        nbits = _rice_cost(firsts, nf, k1) + _rice_cost(gaps, ng, k2)
        for t in range(pos, pos + (nbits + 7) // 8):
            buf[t] = 0
        bit = pos * 8
        gi = 0
        for f in range(nf):
            bit = _put_rice(buf, bit, firsts[f], k1)
            for _ in range(lens[f] - 1):
                bit = _put_rice(buf, bit, gaps[gi], k2)
                gi += 1
        pos += (nbits + 7) // 8
    # the back-link bitmap: bit j (of byte j // 8, from its low bit) for the first list's
    # j-th id, padded with zero bits to a whole byte
    if n_back:
        nbytes = (counts[0, 0] + 7) // 8
        for t in range(nbytes):
            buf[pos + t] = 0
        for i in range(n):
            j = back[i]
            if j >= 0:
                buf[pos + (j >> 3)] |= np.uint8(1 << (j & 7))
        pos += nbytes
    edges_end = pos
    prev = np.int64(0)
    for i in range(removed.shape[0]):
        pos = _put_varint(buf, pos, _zigzag(removed[i] - prev))
        prev = removed[i]
    for t in range(vec.shape[0]):
        buf[pos + t] = vec[t]
    pos += vec.shape[0]
    crc = crc32(buf, 0, pos)
    for t in range(4):
        buf[pos + t] = np.uint8((crc >> (8 * t)) & 0xFF)
    return pos + 4, edges_start, edges_end, ENC_OK, -1



# --------------------------------------------------------------------------- decoding

# why the decoder refused: codes -> messages ({v}: a value)
_W_SHORT = 0
_W_CRC = 1
_W_MAGIC = 2
_W_VERSION = 3
_W_OP = 4
_W_HEADER = 5
_W_SIZES = 6
_W_BODY = 7
_W_TAG = 8
_W_LENGTHS = 9
_W_VALUE = 10
_W_TRAILING = 11
_W_BACK = 12
WHY = {
    _W_SHORT: "{v} bytes is shorter than the smallest delta",
    _W_CRC: "CRC-32 mismatch",
    _W_MAGIC: "bad magic (not a delta)",
    _W_VERSION: "unknown format version {v}; this build reads versions 2 and "
                + str(FORMAT_VERSION),
    _W_OP: "unknown op code {v}",
    _W_HEADER: "truncated or malformed header",
    _W_SIZES: "header sizes out of range",
    _W_BODY: "body shorter than its header announces",
    _W_TAG: "bad tag byte {v}",
    _W_LENGTHS: "list lengths do not add up to the values announced",
    _W_VALUE: "malformed or out-of-range id",
    _W_TRAILING: "body longer than its header announces",
    _W_BACK: "malformed back-links (bitmap, or the records around them)",
}
MIN_BYTES = len(MAGIC) + 2 + 7 + 4
"""The shortest a delta's bytes can be: magic, version, op, seven varints (version 2;
version 3 has eight), CRC."""


@njit(cache=True)
def _read_header(buf, s, e, hdr, k, sizes):
    """Check one delta's CRC and header (buf[s:e]); fill ``hdr[:, k]`` (op, dim, seq,
    entry) and ``sizes`` (n, n_new, n_removed, n_values, body start, body end). Returns
    (why, value): why -1 means it is sound so far."""
    if e - s < MIN_BYTES:
        return _W_SHORT, e - s
    stored = (np.int64(buf[e - 4]) | (np.int64(buf[e - 3]) << 8) | (np.int64(buf[e - 2]) << 16)
              | (np.int64(buf[e - 1]) << 24))
    if crc32(buf, s, e - 4) != stored:
        return _W_CRC, 0
    for t in range(_MAGIC.shape[0]):
        if buf[s + t] != _MAGIC[t]:
            return _W_MAGIC, 0
    version = buf[s + 4]
    if version != FORMAT_VERSION and version != 2:
        return _W_VERSION, np.int64(version)
    if buf[s + 5] >= len(OPS):
        return _W_OP, np.int64(buf[s + 5])
    end = e - 4
    pos = s + 6
    dim, pos = _then_varint(buf, pos, end)
    seq, pos = _then_varint(buf, pos, end)
    entry1, pos = _then_varint(buf, pos, end)
    n, pos = _then_varint(buf, pos, end)
    n_back = np.uint64(0)
    if version != 2:
        n_back, pos = _then_varint(buf, pos, end)
    n_new, pos = _then_varint(buf, pos, end)
    n_removed, pos = _then_varint(buf, pos, end)
    n_values, pos = _then_varint(buf, pos, end)
    if pos < 0:
        return _W_HEADER, 0
    if not (0 < dim <= MAX_DIM and seq < np.uint64(2**63) and entry1 <= np.uint64(2**63)
            and n <= MAX_RECORDS and n_back <= MAX_RECORDS and n_new <= n
            and n_removed <= MAX_RECORDS and n_values < MAX_VALUES):
        return _W_SIZES, 0
    body_end = end - np.int64(n_new) * np.int64(dim) * 4
    # a record takes >= 2 bytes, a removed id >= 1, a value >= 1 unless it is the
    # record's one id left out, a back-link one bit (so the arrays allocated are bounded
    # by the input)
    room = body_end - pos
    if room < 2 * np.int64(n) + np.int64(n_removed) + (np.int64(n_back) + 7) // 8 or \
            np.int64(n_values) > 8 * room + np.int64(n):
        return _W_BODY, 0
    hdr[0, k] = np.int64(buf[s + 5])
    hdr[1, k] = np.int64(dim)
    hdr[2, k] = np.int64(seq)
    hdr[3, k] = np.int64(entry1 - np.uint64(1)) if entry1 > 0 else np.int64(-1)
    sizes[0] = np.int64(n) + np.int64(n_back)
    sizes[1] = np.int64(n_new)
    sizes[2] = np.int64(n_removed)
    sizes[3] = np.int64(n_values) + np.int64(n_back)
    sizes[4] = pos
    sizes[5] = body_end
    sizes[6] = np.int64(n_back)
    sizes[7] = np.int64(version)
    return -1, 0


_I63 = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(inline="always")
def _get_rice(buf, bit, bitend, k):
    """One Rice-coded value at bit ``bit``: returns (value, next bit), bit -1 if it runs
    past ``bitend`` or does not fit in 63 bits."""
    q = np.int64(0)
    while True:
        if bit >= bitend:
            return np.int64(0), -1
        if (buf[bit >> 3] >> (bit & 7)) & 1:
            break
        q += 1
        bit += 1
    bit += 1
    if q > (_I63 >> k) or bit + k > bitend:
        return np.int64(0), -1
    r = np.int64(0)
    got = 0
    while got < k:
        off = bit & 7
        take = min(8 - off, k - got)
        r |= ((np.int64(buf[bit >> 3]) >> off) & ((np.int64(1) << take) - 1)) << got
        got += take
        bit += take
    return (q << k) | r, bit


@njit(cache=True)
def _get_part(buf, at, end, m, values, vp, hold, first, rice, k1, k2):
    """Read ``m`` sorted ids into values[vp:], putting ``first`` in its place when
    ``hold``. ``rice``: from the bit stream at bit ``at`` (the first id with ``k1``,
    each difference after it with ``k2``; ``end`` in bits); else as varints of
    differences at byte ``at``. Returns the new position (-1 if malformed)."""
    if hold and first < 0:
        return -1  # the encoder leaves out only ids >= 0 (list ids are never negative)
    prev = np.int64(0)
    for t in range(m):
        if rice:
            x, at = _get_rice(buf, at, end, k1 if t == 0 else k2)
        else:
            u, at = _get_varint(buf, at, end)
            if u > np.uint64(_I63):
                return -1
            x = np.int64(u)
        if at < 0 or x > _I63 - prev:
            return -1
        v = prev + x
        if hold and first < v:
            values[vp] = first
            vp += 1
            hold = False
        values[vp] = v
        vp += 1
        prev = v
    if hold:
        values[vp] = first
    return at


@njit(cache=True)
def _get_lists(buf, at, end, n, tags, kinds, counts, values, first, rice, k1, k2):
    """Every record's list (or diff parts) into values, by :func:`_get_part`. Returns
    the new position (-1 if malformed)."""
    vp = np.int64(0)
    for i in range(n):
        k = kinds[i]
        if k == KIND_NONE:
            continue
        hold = (buf[tags + i] & _TAG_FIRST) != 0
        w = np.int64(1) if hold else np.int64(0)
        # (every call passes the same argument types: one compiled _get_part per ``rice``)
        if k == KIND_FULL:
            m = np.int64(counts[i, 0])
            at = _get_part(buf, at, end, m - w, values, vp, hold, first, rice, k1, k2)
            vp += m
        else:
            a = np.int64(counts[i, 0])
            b = np.int64(counts[i, 1])
            at = _get_part(buf, at, end, a, values, vp, np.bool_(False), first, rice, k1, k2)
            if at < 0:
                return -1
            at = _get_part(buf, at, end, b - w, values, vp + a, hold, first, rice, k1, k2)
            vp += a + b
        if at < 0:
            return -1
    return at


@njit(cache=True)
def _get_rice_values(buf, pos, end, n, tags, kinds, counts, values, first):
    """Version 3's values: the two Rice parameters (a byte each), then every list (or
    diff part) in one bit stream, zero-padded to a byte; nothing at all when no id is
    written. Returns the new pos (-1 if malformed)."""
    written = np.int64(0)
    for i in range(n):
        if kinds[i] != KIND_NONE:
            written += np.int64(counts[i, 0]) + np.int64(counts[i, 1])
            if buf[tags + i] & _TAG_FIRST:
                written -= 1
    k1 = np.int64(0)
    k2 = np.int64(0)
    bit = pos * 8
    if written:
        if pos + 2 > end or buf[pos] > 62 or buf[pos + 1] > 62:
            return -1
        k1 = np.int64(buf[pos])
        k2 = np.int64(buf[pos + 1])
        bit += 16
    bit = _get_lists(buf, bit, end * 8, n, tags, kinds, counts, values, first, True, k1, k2)
    if bit < 0:
        return -1
    if bit & 7 and buf[bit >> 3] >> (bit & 7):
        return -1  # padding bits set
    return (bit + 7) >> 3  # (no id written: pos, with only held ids filled in)


@njit(cache=True)
def _get_id_run(buf, pos, end, n, out):
    """Read ``n`` ids written as zigzag varints of successive differences into out[:n].
    Returns the new pos (-1 if malformed)."""
    prev = np.int64(0)
    for i in range(n):
        u, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return -1
        prev = prev + _unzigzag(u)
        out[i] = prev
    return pos


@njit(cache=True)
def _get_back_links(buf, pos, end, n, n_back, n_new, n_values, ids, flags, kinds, counts,
                    values):
    """Read the back-link bitmap and put each back-link record in its place among the
    ``n`` records decoded (whose values fill values[:n_values]), by id: the records after
    the first are in id order whenever there are back-links. Returns the new pos (-1 if
    the bitmap or the records around it are malformed)."""
    if n < 1 or kinds[0] != KIND_FULL:
        return -1
    for i in range(2, n):
        if ids[i] <= ids[i - 1]:
            return -1
    m0 = np.int64(counts[0, 0])
    nbytes = (m0 + 7) // 8
    if pos + nbytes > end:
        return -1
    bits = 0
    for j in range(m0):
        if buf[pos + (j >> 3)] >> (j & 7) & 1:
            bits += 1
    if bits != n_back or (m0 & 7 and buf[pos + nbytes - 1] >> (m0 & 7)):
        return -1  # a count that disagrees, or padding bits set
    first = ids[0]
    lowest = ids[n_new - 1] if n_new >= 2 else first  # new nodes stay first
    # merge from the back, in place: every record moves up by the back-links below it
    o = n + n_back - 1
    e = n - 1
    ve = n_values
    vo = n_values + n_back
    for j in range(m0 - 1, -1, -1):
        if not buf[pos + (j >> 3)] >> (j & 7) & 1:
            continue
        x = values[j]  # the first list stays where it is: record 0 never moves
        if x == first or (n_new >= 2 and x <= lowest):
            return -1
        while e >= 1 and ids[e] > x:
            c = np.int64(counts[e, 0]) + np.int64(counts[e, 1])
            for t in range(c - 1, -1, -1):
                values[vo - c + t] = values[ve - c + t]
            ids[o] = ids[e]
            flags[o] = flags[e]
            kinds[o] = kinds[e]
            counts[o, 0] = counts[e, 0]
            counts[o, 1] = counts[e, 1]
            o -= 1
            e -= 1
            ve -= c
            vo -= c
        if e >= 1 and ids[e] == x:
            return -1  # a record written out and a back-link for one id
        ids[o] = x
        flags[o] = FLAG_LIVE
        kinds[o] = KIND_DIFF
        counts[o, 0] = 0
        counts[o, 1] = 1
        values[vo - 1] = first
        o -= 1
        vo -= 1
    return pos + nbytes


@njit(cache=True)
def _decode_body(buf, pos, end, version, n_all, n_back, n_new, n_removed, n_values_all, ids,
                 flags, kinds, counts, values, removed):
    """One delta's body buf[pos:end] into the arrays (``n_all`` records, ``n_back`` of
    them back-links); returns (why, value), why -1 if sound."""
    n = n_all - n_back  # the records written out, decoded first into the arrays' heads
    n_values = n_values_all - n_back
    pos = _get_id_run(buf, pos, end, n, ids)
    if pos < 0 or pos + n > end:
        return _W_BODY, 0
    tags = pos
    pos += n
    total = np.int64(0)
    for i in range(n):
        tag = np.int64(buf[tags + i])
        k = tag & _KIND_MASK
        first = (tag & _TAG_FIRST) != 0
        w = 1 if first else 0
        hi = tag >> 4
        flags[i] = FLAG_DELETED if tag & _TAG_DELETED else FLAG_LIVE
        kinds[i] = k
        if k == KIND_NONE:
            if tag & ~(_KIND_MASK | _TAG_DELETED):
                return _W_TAG, tag
            counts[i, 0] = 0
            counts[i, 1] = 0
        elif k == KIND_FULL:
            a = hi
            if a == _FULL_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                a += np.int64(u)
            counts[i, 0] = a + w
            counts[i, 1] = 0
            total += a + w
        elif k == KIND_DIFF:
            a = hi & 3
            b = hi >> 2
            if a == _DIFF_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                a += np.int64(u)
            if b == _DIFF_MORE:
                u, pos = _get_varint(buf, pos, end)
                if pos < 0 or u > np.uint64(n_values):
                    return _W_LENGTHS, 0
                b += np.int64(u)
            counts[i, 0] = a
            counts[i, 1] = b + w
            total += a + b + w
        else:
            return _W_TAG, tag
        if total > n_values:
            return _W_LENGTHS, 0
    if total != n_values:
        return _W_LENGTHS, 0
    first_id = ids[0] if n else np.int64(-1)
    if version == 2:
        pos = _get_lists(buf, pos, end, n, tags, kinds, counts, values, first_id, False,
                         np.int64(0), np.int64(0))
    else:
        pos = _get_rice_values(buf, pos, end, n, tags, kinds, counts, values, first_id)
    if pos < 0:
        return _W_VALUE, 0
    if n_back:
        pos = _get_back_links(buf, pos, end, n, n_back, n_new, n_values, ids, flags, kinds,
                              counts, values)
        if pos < 0:
            return _W_BACK, 0
    pos = _get_id_run(buf, pos, end, n_removed, removed)
    if pos < 0:
        return _W_BODY, 0
    if pos != end:
        return _W_TRAILING, 0
    return -1, 0


@njit(cache=True)
def decode_kernel(buf, starts):
    """Decode the deltas buf[starts[k]:starts[k + 1]], every one checked before anything
    is returned. Returns (first bad delta or -1, why, value, hdr, off, ids, flags, kinds,
    counts, values, vector bytes, removed)."""
    nb = starts.shape[0] - 1
    hdr = np.zeros((4, nb), dtype=np.int64)
    sizes = np.zeros((nb, 8), dtype=np.int64)
    off = np.zeros((nb + 1, 5), dtype=np.int64)
    for k in range(nb):
        why, val = _read_header(buf, starts[k], starts[k + 1], hdr, k, sizes[k])
        if why >= 0:
            return (k, why, val, hdr, off, np.empty(0, np.int64), np.empty(0, np.uint8),
                    np.empty(0, np.uint8), np.empty((0, 2), np.int32), np.empty(0, np.int64),
                    np.empty(0, np.uint8), np.empty(0, np.int64))
        off[k + 1, 0] = off[k, 0] + sizes[k, 0]
        off[k + 1, 1] = off[k, 1] + sizes[k, 3]
        off[k + 1, 2] = off[k, 2] + sizes[k, 1]
        off[k + 1, 3] = off[k, 3] + sizes[k, 2]
        off[k + 1, 4] = off[k, 4] + sizes[k, 1] * hdr[1, k]
    ids = np.empty(off[nb, 0], dtype=np.int64)
    flags = np.empty(off[nb, 0], dtype=np.uint8)
    kinds = np.empty(off[nb, 0], dtype=np.uint8)
    counts = np.empty((off[nb, 0], 2), dtype=np.int32)
    values = np.empty(off[nb, 1], dtype=np.int64)
    removed = np.empty(off[nb, 3], dtype=np.int64)
    vec = np.empty(4 * off[nb, 4], dtype=np.uint8)
    for k in range(nb):
        r0 = off[k, 0]
        r1 = off[k + 1, 0]
        why, val = _decode_body(
            buf, sizes[k, 4], sizes[k, 5], sizes[k, 7], sizes[k, 0], sizes[k, 6], sizes[k, 1],
            sizes[k, 2], sizes[k, 3],
            ids[r0:r1], flags[r0:r1], kinds[r0:r1], counts[r0:r1],
            values[off[k, 1]:off[k + 1, 1]], removed[off[k, 3]:off[k + 1, 3]],
        )
        if why >= 0:
            return (k, why, val, hdr, off, ids, flags, kinds, counts, values, vec, removed)
        f0 = 4 * off[k, 4]
        src = sizes[k, 5]
        for t in range(4 * (off[k + 1, 4] - off[k, 4])):
            vec[f0 + t] = buf[src + t]
    return (-1, 0, np.int64(0), hdr, off, ids, flags, kinds, counts, values, vec, removed)
