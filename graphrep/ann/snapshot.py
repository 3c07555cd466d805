"""Snapshots: the whole index as a NumPy ``.npz`` archive, in a file or as bytes.

:meth:`VamanaIndex.save <graphrep.ann.VamanaIndex.save>`,
:meth:`~graphrep.ann.VamanaIndex.to_bytes`, :meth:`~graphrep.ann.VamanaIndex.load`
and :meth:`~graphrep.ann.VamanaIndex.from_bytes` call the functions here. A
snapshot holds everything the index holds (slot layout, free list, seq and
counters included) as uncompressed arrays plus JSON metadata; reading one
checks everything before the index is allocated, and anything wrong raises
:class:`~graphrep.errors.CorruptIndexFile`.
"""

from __future__ import annotations

import io
import json
import os
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from numpy.lib import format as npformat

from graphrep.ann.delta_apply import first_too_large
from graphrep.ann.idmap import MAX_ID
from graphrep.ann.kernels import DELETED, FREE, LIVE, N_COUNTERS
from graphrep.ann.validation import COUNTED_OPS, MAX_SEQ, METRICS, check_int, is_real
from graphrep.errors import CorruptIndexFile, InvalidArgument

if TYPE_CHECKING:
    from graphrep.ann.index import VamanaIndex

SAVE_FORMAT = 1


def save(index: VamanaIndex, path: str | os.PathLike[str]) -> None:
    """Write ``index`` to ``path`` (the name is used as given)."""
    with open(path, "wb") as f:
        _write(index, f)


def to_bytes(index: VamanaIndex) -> bytes:
    """``index`` as snapshot bytes: exactly what :func:`save` writes to a file."""
    buf = io.BytesIO()
    _write(index, buf)
    return buf.getvalue()


def load(cls: type[VamanaIndex], path: str | os.PathLike[str]) -> VamanaIndex:
    """The index (of class ``cls``) in the file ``path`` written by :func:`save`."""
    p = Path(path)
    if not p.is_file():
        raise CorruptIndexFile(f"no index file at {p}")
    return _read(cls, p, f"{p}", "graphrep index file")


def from_bytes(cls: type[VamanaIndex], data: bytes | bytearray | memoryview) -> VamanaIndex:
    """The index (of class ``cls``) in bytes made by :func:`to_bytes`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"from_bytes takes bytes, not {type(data).__name__}")
    return _read(cls, io.BytesIO(bytes(data)), "the snapshot bytes", "graphrep index snapshot")


def _write(index: VamanaIndex, f: BinaryIO) -> None:
    n = index._n_slots
    g = index._g
    meta = {
        "format": SAVE_FORMAT, "dim": index.dim, "metric": index.metric, "R": index.R,
        "L": index.L, "alpha": index.alpha, "build_slack": index.build_slack,
        "new_degree": index.new_degree, "seed": index.seed, "n_slots": n,
        "entry": index._entry, "seq": index._seq,
        "free": index._free[: index._n_free].tolist(),
        "totals": index._totals, "counters": index._counters.tolist(),
    }
    np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
             vecs=g.vecs[:n], nbrs=g.nbrs[:n], deg=g.deg[:n], flags=g.flags[:n],
             ext=g.ext[:n])


def _read(cls: type[VamanaIndex], source: Path | BinaryIO, name: str, kind: str
          ) -> VamanaIndex:
    """The index in ``source``; ``name`` and ``kind`` say in error messages what it was.

    Everything is checked before the index is allocated, and no array is read
    before its size is known to be what the archive holds: the archive's array
    members must be stored uncompressed (as :func:`save` writes them) with sound
    CRC-32s; each ``.npy`` header's dtype and shape must be what the metadata
    announces and account for its member's size exactly; the metadata's fields
    must all be there, of their types and in range (:func:`_check_meta`);
    the arrays must hold an index that keeps every invariant a delta keeps
    (:func:`_check_graph`). Anything else raises :class:`CorruptIndexFile`.
    """
    try:
        with zipfile.ZipFile(source) as zf:
            members = _members(zf)
            try:
                meta = json.loads(bytes(_read_npy(zf, members["meta"], "meta")).decode())
            except RecursionError:
                raise ValueError("its metadata is nested too deeply to be an index's "
                                 "metadata") from None
            if not isinstance(meta, dict) or meta.get("format") != SAVE_FORMAT:
                raise _ForeignFormat(meta.get("format") if isinstance(meta, dict) else "?")
            try:
                shapes = _check_meta(meta)
            except (InvalidArgument, KeyError, TypeError, ValueError, OverflowError) as e:
                raise _Inconsistent(f"its metadata is invalid: {e}") from e
            arrays = {k: _read_npy(zf, members[k], k, shp) for k, shp in shapes.items()}
    except _ForeignFormat as e:
        raise CorruptIndexFile(
            f"{name} has format {e.args[0]}; this graphrep reads format {SAVE_FORMAT}"
        ) from None
    except _Inconsistent as e:
        raise CorruptIndexFile(f"{name} holds an inconsistent index: {e}") from e
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, RecursionError,
            tokenize.TokenError, zipfile.BadZipFile, UnicodeDecodeError, EOFError,
            NotImplementedError, RuntimeError, OverflowError, zlib.error) as e:
        raise CorruptIndexFile(
            f"{name} is not a readable {kind}: {e}; it was damaged or not written by "
            "VamanaIndex.save/to_bytes"
        ) from e
    try:
        _check_graph(meta, arrays)
        idx = cls(meta["dim"], meta["metric"], meta["R"], meta["L"], meta["alpha"],
                  build_slack=meta["build_slack"], seed=meta["seed"],
                  capacity=max(1, meta["n_slots"]),
                  new_degree=meta.get("new_degree"))  # absent: written before it existed
    except (ValueError, InvalidArgument) as e:
        raise CorruptIndexFile(f"{name} holds an inconsistent index: {e}") from e
    _restore(idx, meta, arrays)
    return idx


def _restore(index: VamanaIndex, meta: dict, a: dict[str, np.ndarray]) -> None:
    """Take in a snapshot's metadata and arrays, which :func:`_read` checked."""
    n = meta["n_slots"]
    g = index._g
    g.vecs[:n] = a["vecs"]
    g.deg[:n] = a["deg"]
    valid = np.arange(index.R)[None, :] < g.deg[:n][:, None]
    g.nbrs[:n] = np.where(valid, a["nbrs"], -1)  # past a list's end: -1, as kept in memory
    g.flags[:n] = a["flags"]
    g.ext[:n] = a["ext"]
    used = g.flags[:n] != FREE
    g.indeg[:n] = np.bincount(g.nbrs[:n][valid], minlength=n)[:n] if n else 0
    index._n_slots = n
    free = np.asarray(meta["free"], dtype=np.int64)
    index._free[: free.size] = free
    index._n_free = int(free.size)
    index._n_live = int((g.flags[:n] == LIVE).sum())
    index._n_deleted = int((g.flags[:n] == DELETED).sum())
    index._entry = meta["entry"]
    index._seq = meta["seq"]
    index._idmap.put_many(g.ext[:n][used], np.flatnonzero(used).astype(np.int32))
    for op, v in meta["totals"].items():
        index._totals[op].update(v)
    index._counters[:] = np.asarray(meta["counters"], dtype=np.int64)


class _ForeignFormat(Exception):
    """A snapshot's metadata names another format version (``args[0]``)."""


class _Inconsistent(Exception):
    """A snapshot is readable but does not hold a valid index (the message says why)."""


# the members of a snapshot and the dtype of each (the metadata is JSON as uint8)
_SNAPSHOT_DTYPES = {"meta": np.uint8, "vecs": np.float32, "nbrs": np.int32, "deg": np.int32,
                    "flags": np.uint8, "ext": np.int64}
_SNAPSHOT_META = ("format", "dim", "metric", "R", "L", "alpha", "build_slack", "seed",
                  "n_slots", "entry", "seq", "free", "totals", "counters")
_TOTAL_KEYS = ("calls", "distance_computations", "nodes_visited")
_MAX_COUNT = 2**63 - 1


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive members of a snapshot's arrays, each checked to be stored uncompressed
    (as ``np.savez`` writes them: the data is then as large as the member's bytes in the
    archive) and to pass its CRC-32 (before numpy parses a header that may be damaged)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        if info.filename.endswith(".npy") and key in _SNAPSHOT_DTYPES:
            members[key] = info
    for key in _SNAPSHOT_DTYPES:
        info = members.get(key)
        if info is None:
            raise ValueError(f"it has no member {key}.npy")
        if info.flag_bits & 0x1:
            raise ValueError(f"member {key}.npy is encrypted")
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise ValueError(f"member {key}.npy is compressed; VamanaIndex.save stores its "
                             "arrays uncompressed")
        with zf.open(info) as f:  # zipfile checks the CRC-32 at the end of the data
            while f.read(1 << 20):
                pass
    return members


def _read_npy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
              shape: tuple[int, ...] | None = None) -> np.ndarray:
    """The array ``key`` in the ``.npy`` member ``info``: its header is checked (dtype
    ``_SNAPSHOT_DTYPES[key]`` in either byte order, C order, ``shape`` or any 1-d shape
    when None, data exactly the rest of the member) before its data is read."""
    want = np.dtype(_SNAPSHOT_DTYPES[key])
    with zf.open(info) as f:
        version = npformat.read_magic(f)
        if version == (1, 0):
            got, fortran, dtype = npformat.read_array_header_1_0(f)
        elif version == (2, 0):
            got, fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"array {key} has .npy format version {version}")
        if dtype.newbyteorder("=") != want or dtype.hasobject:
            raise ValueError(f"array {key} has dtype {dtype}, not {want}")
        if fortran:
            raise ValueError(f"array {key} is stored in Fortran order")
        if (shape is None and len(got) != 1) or (shape is not None and got != shape):
            raise ValueError(f"array {key} has shape {got}, expected "
                             f"{shape if shape is not None else 'a 1-d shape'}")
        nbytes = want.itemsize
        for m in got:
            nbytes *= m
        if info.file_size - f.tell() != nbytes:
            raise ValueError(f"array {key}'s header announces {nbytes} bytes of data, its "
                             f"member holds {info.file_size - f.tell()}")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"array {key} is truncated")
    arr = np.frombuffer(data, dtype=dtype).reshape(got)
    return arr if dtype == want else arr.astype(want)


def _check_meta(meta: dict) -> dict[str, tuple[int, ...]]:
    """Check every field of a snapshot's metadata (its type and range, as the index's
    constructor and state take them); return the shape each array must have."""
    missing = [k for k in _SNAPSHOT_META if k not in meta]
    if missing:
        raise ValueError(f"it lacks {', '.join(missing)}")
    check_int(meta["dim"], "dim", 1, 1 << 16)
    check_int(meta["R"], "R", 2, 4096)
    check_int(meta["L"], "L", 1, 1 << 20)
    check_int(meta["seed"], "seed", 0, 2**63 - 1)
    check_int(meta["n_slots"], "n_slots", 0, 1 << 31)
    n, dim, R = meta["n_slots"], meta["dim"], meta["R"]
    if "new_degree" in meta:
        check_int(meta["new_degree"], "new_degree", 1, R)
    check_int(meta["entry"], "entry", -1, n - 1)
    check_int(meta["seq"], "seq", 0, MAX_SEQ)
    if not isinstance(meta["metric"], str) or meta["metric"] not in METRICS:
        raise ValueError(f"metric {meta['metric']!r} is not one of {METRICS}")
    for key, lo, hi in (("alpha", 1.0, float("inf")), ("build_slack", 1.0, 4.0)):
        v = meta[key]
        if not (is_real(v) and lo <= v <= hi):
            raise ValueError(f"{key} {v!r} is not a finite number in [{lo}, {hi}]")
    free = meta["free"]
    if not isinstance(free, list) or len(free) > n or not all(type(s) is int for s in free):
        raise ValueError("free is not a list of at most n_slots slot numbers")
    if free and not (min(free) >= 0 and max(free) < n):
        raise ValueError(f"the free list names a slot outside [0, {n})")
    totals = meta["totals"]
    if not isinstance(totals, dict):
        raise ValueError("totals is not an object")
    for op, t in totals.items():
        if op not in COUNTED_OPS or not isinstance(t, dict) or not set(t) <= set(_TOTAL_KEYS):
            raise ValueError(f"totals holds {op!r}: {t!r}, not an operation's counters")
        for k, v in t.items():
            check_int(v, f"totals {op} {k}", 0, _MAX_COUNT)
    counters = meta["counters"]
    if not isinstance(counters, list) or len(counters) != N_COUNTERS:
        raise ValueError(f"counters is not a list of {N_COUNTERS} counts")
    for v in counters:
        check_int(v, "a counter", 0, _MAX_COUNT)
    return {"vecs": (n, dim), "nbrs": (n, R), "deg": (n,), "flags": (n,), "ext": (n,)}


def _check_graph(meta: dict, a: dict[str, np.ndarray]) -> None:
    """The arrays of a snapshot (shapes checked) hold an index that keeps every invariant
    a delta keeps (:mod:`graphrep.ann.delta_apply`): flags free, live or deleted; degrees in
    [0, R], none for a free slot; every edge to a stored node, none to itself, none
    twice; ids unique and in [0, 2**62); vectors of stored nodes finite with squared
    norm <= 2**125; the free list each free slot exactly once; an entry point that is
    a stored node (-1 when there is none)."""
    n, R = meta["n_slots"], meta["R"]
    flags, deg, nbrs, ext = a["flags"], a["deg"], a["nbrs"], a["ext"]

    def first(mask: np.ndarray) -> int:
        return int(np.flatnonzero(mask)[0])

    if (flags > DELETED).any():
        i = first(flags > DELETED)
        raise ValueError(f"slot {i} has flags {int(flags[i])}, not 0 (free), 1 (live) or "
                         "2 (deleted)")
    used = flags != FREE
    if ((deg < 0) | (deg > R)).any():
        i = first((deg < 0) | (deg > R))
        raise ValueError(f"slot {i} has degree {int(deg[i])}, outside [0, R={R}]")
    if (deg[~used] != 0).any():
        raise ValueError(f"free slot {first(~used & (deg != 0))} has edges")
    valid = np.arange(R)[None, :] < deg[:, None]
    targets = nbrs[valid]
    owner = np.repeat(np.arange(n), deg)
    out = (targets < 0) | (targets >= n)
    if out.any():
        j = first(out)
        raise ValueError(f"slot {int(owner[j])} has an edge to slot {int(targets[j])}, "
                         "outside the stored slots")
    to_free = ~used[targets]
    if to_free.any():
        j = first(to_free)
        raise ValueError(f"slot {int(owner[j])} has an edge to free slot {int(targets[j])}")
    if (targets == owner).any():
        raise ValueError(f"slot {int(owner[first(targets == owner)])} has an edge to itself")
    srt = np.sort(np.where(valid, nbrs, -1), axis=1)
    rep = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    if rep.any():
        raise ValueError(f"slot {first(rep.any(axis=1))} has the same edge twice")
    ids = ext[used]
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise ValueError(f"id {int(ids[(ids < 0) | (ids > MAX_ID)][0])} is outside [0, 2**62)")
    if np.unique(ids).size != ids.size:
        raise ValueError("an id is stored in two slots")
    vecs = np.ascontiguousarray(a["vecs"][used])
    if not np.isfinite(vecs).all():
        raise ValueError(f"the vector of id {int(ids[first(~np.isfinite(vecs).all(axis=1))])} "
                         "holds NaN or inf")
    big = int(first_too_large(vecs))
    if big >= 0:
        raise ValueError(f"the vector of id {int(ids[big])} has a squared norm above 2**125")
    free = np.asarray(meta["free"], dtype=np.int64)
    if used[free].any():
        raise ValueError(f"the free list names slot {int(free[used[free]][0])}, which is in "
                         "use")
    if np.unique(free).size != free.size:
        raise ValueError("the free list names a slot twice")
    if free.size != n - int(used.sum()):
        raise ValueError("the free list does not name every free slot")
    entry = meta["entry"]
    if ids.size and not (entry >= 0 and used[entry]):
        raise ValueError(f"entry point {entry} is not a stored node")
    if not ids.size and entry != -1:
        raise ValueError(f"entry point {entry} in an index that stores no node")
