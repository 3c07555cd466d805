"""The durable store of a live node: the replica's disk (a key -> value map) in SQLite.

Why SQLite: it is the embedded database every Python has (stdlib ``sqlite3``), its WAL
mode gives one fsync per committed transaction with ``synchronous=FULL``, it checks its
own pages and that its key index matches its table (``PRAGMA integrity_check``), and a
torn WAL tail is discarded by its own
checksums. A home-made file format would have to re-earn all of that.

The map is one table ``kv(key BLOB PRIMARY KEY, value BLOB)``, a rowid table (not
``WITHOUT ROWID``: a snapshot row of megabytes in a ``WITHOUT ROWID`` table made every
small commit several times slower, 1.75 ms against 0.15 ms per two-row commit beside a
6 MB row, measured); keys and values are
msgpack (tuples come back as tuples: ``use_list=False``). Writing ``None`` deletes a key,
which is what the simulator's disk means by it (``disk.get(key) is None``).

Group commit: :meth:`SQLiteStore.put` only buffers. :meth:`request_sync` asks for the
buffered writes to become durable and returns the number of the commit that will hold
them; one commit runs at a time (in a worker thread, so the node's loop keeps
receiving), and every sync requested while one is running shares the next commit.
:attr:`durable` is the number of the last finished commit; :meth:`wait` waits for one.

A failed commit is fatal: :meth:`run` raises :class:`~graphrep.errors.StoreError` and the
node exits. It never retries: after a failed fsync the kernel may have dropped the dirty
pages and a second fsync can report success for data that is gone.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import msgpack
import trio

from graphrep.errors import InvalidArgument, StoreDamaged, StoreError

__all__ = ["SQLiteStore"]

log = logging.getLogger("graphrep.net.store")

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key BLOB PRIMARY KEY, value BLOB NOT NULL)"


_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# the SQLite result codes that mean the file itself is bad; any other error opening the
# store (a directory in the way, no permission, a lock) is not damage and says so
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)


class SQLiteStore:
    """``SQLiteStore(path)``: open (or create) the store file and check it.

    Raises :class:`StoreDamaged` if SQLite finds the file damaged or a row does not
    decode: the node must not start from a store it cannot trust; :class:`StoreError` if
    the file cannot be opened for another reason (the message says which)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if str(synchronous).upper() not in _SYNCHRONOUS:
            # SQLite takes an unknown level silently as NORMAL, which does not fsync commits
            raise InvalidArgument(f"synchronous={synchronous!r} is not one of {_SYNCHRONOUS}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer: dict[bytes, bytes | None] = {}
        self.durable = 0
        self.committing: int | None = None
        self.requested = 0
        self.commits = 0
        self.rows_written = 0
        self.commit_seconds: list[float] = []
        self.observe_commit: Callable[[float], None] | None = None
        """Called with each finished commit's duration in seconds, in the node's loop
        (:mod:`graphrep.net.metrics` puts its fsync histogram's ``observe`` here)."""
        self._wake = trio.Event()
        self._done = trio.Event()
        self.failed: BaseException | None = None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None
        try:
            self._open(synchronous)
        except BaseException:
            self.close()
            raise

    def _open(self, synchronous: str) -> None:
        try:
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: SQLite would not switch to WAL mode ({mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._db.execute(_SCHEMA)
            # integrity_check, not quick_check: it also checks that the key index matches
            # the table (a damaged index would let INSERT OR REPLACE add a second row for
            # a key instead of replacing it); the map is small but for the snapshot
            check = self._db.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", None)  # may be an extended code
            if code is not None and code & 0xFF in _DAMAGE_CODES:
                raise self._damaged(str(exc)) from None
            raise StoreError(f"cannot open the store {self.path}: {exc}") from None
        if check != [("ok",)]:
            raise self._damaged("; ".join(str(row[0]) for row in check[:3]))

    def _damaged(self, why: str) -> StoreDamaged:
        return StoreDamaged(
            f"the store {self.path} is damaged ({why}). The node will not serve from it. To "
            f"recover: stop the node, move {self.path.parent} aside (keep it for "
            f"inspection), and start the node again: it rejoins empty and catches up from "
            f"the shard's leader (do this only while the other replicas are up)")

    # ------------------------------------------------------------------ reading

    def load(self) -> dict[Hashable, Any]:
        """Everything durable, as the replica's disk."""
        out: dict[Hashable, Any] = {}
        try:
            rows = self._db.execute("SELECT key, value FROM kv").fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(str(exc)) from None
        for key, value in rows:
            try:
                out[_unpack(key)] = _unpack(value)
            except Exception as exc:  # msgpack raises several types on garbage
                raise self._damaged(f"a row does not decode: {type(exc).__name__}") from None
        return out

    # ------------------------------------------------------------------ writing

    def put(self, key: Hashable, value: Any) -> None:
        """Buffer ``disk[key] = value`` (``None`` deletes); durable after a sync."""
        self._buffer[_pack(key)] = None if value is None else _pack(value)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def request_sync(self) -> int:
        """Ask for every write buffered so far to become durable; returns the number of
        the commit that will hold them (``<= durable`` if they already are)."""
        base = self.committing if self.committing is not None else self.durable
        if not self._buffer:
            return base  # everything before now is durable or in the running commit
        self.requested = max(self.requested, base + 1)
        self._wake.set()
        return base + 1

    async def wait(self, number: int) -> None:
        """Wait until commit ``number`` is durable; :class:`StoreError` if the store failed
        first (a waiter already waiting is woken by the failure)."""
        while self.durable < number:
            if self.failed is not None:
                raise StoreError(f"the store failed: {self.failed}")
            await self._done.wait()

    async def run(self) -> None:
        """The committer: runs requested commits one at a time until cancelled. A failed
        commit raises :class:`StoreError` (fatal), and so does calling run again after
        one: the failed batch is gone and must not be reported durable by a later commit."""
        if self.failed is not None:
            raise StoreError(f"the store failed earlier ({self.failed!r}); it does not retry")
        while True:
            while self.requested <= self.durable:
                self._wake = trio.Event()
                await self._wake.wait()
            number = self.requested
            batch, self._buffer = self._buffer, {}
            self.committing = number
            started = time.perf_counter()
            try:
                await trio.to_thread.run_sync(self._commit, batch)
            except trio.Cancelled:
                # cancelled before the worker thread started (a running commit is never
                # abandoned): nothing was written; the batch is buffered again, oldest first
                batch.update(self._buffer)
                self._buffer = batch
                self.committing = None
                raise
            except BaseException as exc:
                self.failed = exc
                self._done.set()  # wake the waiters: they raise instead of waiting forever
                log.critical("store commit failed, the node stops: %r", exc)
                raise StoreError(f"commit to {self.path} failed ({exc!r}); the node stops "
                                 "(a retried fsync may report success for lost data)") from exc
            took = time.perf_counter() - started
            self.commit_seconds.append(took)
            if self.observe_commit is not None:
                self.observe_commit(took)
            if len(self.commit_seconds) > 65536:
                del self.commit_seconds[:32768]
            self.commits += 1
            self.rows_written += len(batch)
            self.committing = None
            self.durable = number
            done, self._done = self._done, trio.Event()
            done.set()

    def _commit(self, batch: dict[bytes, bytes | None]) -> None:
        """One transaction (a worker thread): the batch's upserts and deletes, then COMMIT,
        which under WAL + ``synchronous=FULL`` returns after the WAL is fsynced."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            puts = [(k, v) for k, v in batch.items() if v is not None]
            dels = [(k,) for k, v in batch.items() if v is None]
            if puts:
                db.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", puts)
            if dels:
                db.executemany("DELETE FROM kv WHERE key = ?", dels)
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def sync_now(self) -> None:
        """Commit what is buffered, blocking (for tools and shutdown, not the node loop)."""
        if self.failed is not None:
            raise StoreError(f"the store failed earlier ({self.failed!r}); it does not retry")
        if self._buffer:
            batch, self._buffer = self._buffer, {}
            self._commit(batch)
            self.durable = max(self.durable, self.requested)

    def close(self) -> None:
        """Close the database (what is not synced is not written)."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
