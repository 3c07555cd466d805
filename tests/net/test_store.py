"""The SQLite store of a live node: what a sync commits survives a reopen (and nothing
else does), syncs requested together share a commit, a failed commit is fatal and never
retried, and a damaged file is refused with instructions.

Damage detection, as observed with SQLite 3.40 (these tests pin it down):

* detected (:class:`StoreDamaged` when the store opens): garbage over the file, a bad
  header, truncation anywhere after the first page or mid-page (SQLite compares the
  header's page count with the file size), a b-tree page zeroed or overwritten, a wrong
  freelist count (``PRAGMA integrity_check`` answers with rows instead of raising);
* not detected by SQLite: bytes changed inside a row's value (SQLite has no page
  checksums; ``integrity_check`` checks structure only), garbage appended after the last
  page, and truncation to zero bytes, which SQLite opens as a new, empty database;
* the WAL: a frame whose checksum fails ends the log, silently, so one flipped bit in
  the WAL loses that commit and every later one (until a checkpoint has copied them
  into the database file; :meth:`SQLiteStore.close` checkpoints).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
import threading
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrep.errors import InvalidArgument, StoreDamaged, StoreError
from graphrep.net.store import SQLiteStore

DATA = {
    (0, ("log", 5)): (1, 0, b"x", 123),
    (0, ("log", 6)): (1, 2, b"", -(2**63)),
    (0, "term"): 7,
    (3, "vote"): "r2",
    ("snapshot",): b"\x00" * 1000,
    7: (1.5, None, True, ("nested", (1, 2))),
}


async def committed(store: SQLiteStore) -> int:
    """Run the committer until everything buffered so far is durable."""
    number = store.request_sync()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run)
        await store.wait(number)
        nursery.cancel_scope.cancel()
    assert store.durable >= number
    return number


def reopen(path: Path) -> dict:
    store = SQLiteStore(path)
    try:
        return store.load()
    finally:
        store.close()


# ---------------------------------------------------------------- durability


@pytest.mark.trio
async def test_a_synced_map_survives_a_reopen_with_its_tuples(tmp_path):
    path = tmp_path / "node" / "store.sqlite3"  # the directory is created
    store = SQLiteStore(path)
    assert store.load() == {}
    for key, value in DATA.items():
        store.put(key, value)
    assert await committed(store) == 1
    assert store.load() == DATA
    store.close()

    back = reopen(path)
    assert back == DATA
    assert all(type(k) is tuple for k in back if k != 7)  # not lists
    assert type(back[(0, ("log", 5))]) is tuple
    assert back[(0, ("log", 5))][2] == b"x" and type(back[(0, ("log", 5))][2]) is bytes


@pytest.mark.trio
async def test_none_deletes_and_a_later_write_wins(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    for key, value in DATA.items():
        store.put(key, value)
    await committed(store)
    store.put((0, ("log", 5)), None)
    store.put((0, "term"), 8)
    store.put((0, "term"), 9)  # the last write of a batch wins
    store.put(("never", "written"), None)  # deleting a missing key is harmless
    store.put(("gone",), 1)
    store.put(("gone",), None)
    await committed(store)
    store.close()
    want = {**DATA, (0, "term"): 9}
    del want[(0, ("log", 5))]
    assert reopen(path) == want


@pytest.mark.trio
async def test_unsynced_writes_are_not_on_disk_after_a_crash(tmp_path):
    """A write is durable only once its commit has run: what was put (or even requested)
    but not committed is absent when the file is opened again."""
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    store.put("a", 1)
    await committed(store)
    store.put("b", 2)  # buffered only
    store.put("a", None)  # a delete, buffered only
    store.request_sync()  # requested, but the committer never ran
    # the crash: the process is gone; another open of the file sees what is committed
    assert reopen(path) == {"a": 1}
    store.close()  # close does not write what is buffered
    assert reopen(path) == {"a": 1}


@settings(max_examples=40)
@given(st.lists(st.one_of(
    st.tuples(st.integers(0, 5), st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1),
                                          st.binary(max_size=8))),
    st.just("sync")), max_size=30))
def test_after_a_crash_the_store_holds_exactly_the_synced_writes(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("prop") / "s.sqlite3"
    store = SQLiteStore(path, synchronous="OFF")  # the fsyncs are not what is tested
    synced: dict = {}
    pending: dict = {}
    for op in ops:
        if op == "sync":
            store.request_sync()
            store.sync_now()
            synced.update(pending)
            pending = {}
        else:
            key, value = op
            store.put(("k", key), value)
            pending[("k", key)] = value
    assert reopen(path) == {k: v for k, v in synced.items() if v is not None}
    store.close()


# ---------------------------------------------------------------- group commit


@pytest.mark.trio
async def test_syncs_requested_during_a_commit_share_the_next_one(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    entered, release = threading.Event(), threading.Event()
    real = store._commit

    def gated(batch):
        entered.set()
        release.wait()
        real(batch)

    store._commit = gated
    async with trio.open_nursery() as nursery:
        try:  # the gated thread cannot be cancelled: release it whatever happens
            nursery.start_soon(store.run)
            store.put(("k", -1), -1)
            first = store.request_sync()
            assert first == 1
            await trio.to_thread.run_sync(entered.wait)
            assert store.committing == first and store.durable == 0
            numbers = set()
            for i in range(50):
                store.put(("k", i), i)
                numbers.add(store.request_sync())
            assert numbers == {first + 1}
            assert store.buffered == 50
        finally:
            release.set()
        await store.wait(first + 1)
        assert store.durable == first + 1
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert store.commits == 2
    assert store.rows_written == 51
    store.close()
    assert reopen(path) == {("k", i): i for i in range(-1, 50)}


@pytest.mark.trio
async def test_syncs_requested_before_the_committer_runs_share_one_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    numbers = set()
    for i in range(20):
        store.put(i, i)
        numbers.add(store.request_sync())
    assert numbers == {1}
    await committed(store)
    assert store.commits == 1 and store.durable == 1
    store.close()


@pytest.mark.trio
async def test_a_sync_with_nothing_buffered_needs_no_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    assert store.request_sync() == 0 == store.durable
    await store.wait(0)  # returns at once: nothing to wait for
    store.put("a", 1)
    await committed(store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run)
        number = store.request_sync()
        assert number == store.durable == 1
        await store.wait(number)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert store.commits == 1  # no empty commit was run
    store.close()


# ---------------------------------------------------------------- failure


@pytest.mark.trio
async def test_a_failed_commit_is_fatal_and_never_retried(tmp_path):
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    calls = []

    def broken(batch):
        calls.append(dict(batch))
        raise sqlite3.OperationalError("disk I/O error")

    store._commit = broken
    store.put("a", 1)
    number = store.request_sync()
    woken: list[BaseException] = []

    async def waiter() -> None:
        try:
            await store.wait(number)
        except StoreError as exc:
            woken.append(exc)

    async with trio.open_nursery() as outer:
        outer.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()  # the waiter is waiting
        with pytest.raises(StoreError, match="disk I/O error") as info:
            await store.run()
        await trio.testing.wait_all_tasks_blocked()
        hung = not woken
        outer.cancel_scope.cancel()
    assert not hung, "a task waiting for the failed commit was never woken"
    assert "the node stops" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)
    assert len(calls) == 1
    assert store.durable == 0

    with pytest.raises(StoreError, match="failed"):
        await store.wait(number)  # a later waiter too
    with pytest.raises(StoreError, match="does not retry"):
        await store.run()  # a second committer would report the lost batch durable
    with pytest.raises(StoreError, match="does not retry"):
        store.sync_now()
    assert len(calls) == 1 and store.durable == 0
    store.close()
    assert reopen(path) == {}


@pytest.mark.trio
async def test_a_commit_on_a_closed_database_fails_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.put("a", 1)
    number = store.request_sync()
    store._db.close()  # the database goes away under the committer
    with pytest.raises(StoreError, match=r"commit to .* failed"):
        await store.run()
    assert store.failed is not None
    with pytest.raises(StoreError):
        await store.wait(number)


def test_a_path_that_cannot_be_opened_is_an_error_but_not_damage(tmp_path):
    """A directory where the file should be is not a damaged store: the node must not
    tell its operator to move the data aside."""
    (tmp_path / "store.sqlite3").mkdir()
    with pytest.raises(StoreError) as info:
        SQLiteStore(tmp_path / "store.sqlite3")
    assert not isinstance(info.value, StoreDamaged)
    assert "cannot open the store" in str(info.value)


def test_an_unknown_synchronous_level_is_refused(tmp_path):
    """SQLite would take a typo as NORMAL, which does not fsync each commit."""
    with pytest.raises(InvalidArgument, match="FULLL"):
        SQLiteStore(tmp_path / "s.sqlite3", synchronous="FULLL")
    SQLiteStore(tmp_path / "s.sqlite3", synchronous="extra").close()


# ---------------------------------------------------------------- damage

PAGE = 4096
MARK = b"\xab" * 64


@pytest.fixture
def store_file(tmp_path) -> Path:
    """A closed store of about 80 pages (the WAL checkpointed into the file)."""
    path = tmp_path / "node" / "store.sqlite3"
    store = SQLiteStore(path)
    for i in range(2000):
        store.put((0, ("log", i)), (1, 0, b"x" * 100, i))
    store.put("marked", MARK)
    store.sync_now()
    store.close()
    assert not path.with_name(path.name + "-wal").exists()
    assert path.stat().st_size % PAGE == 0 and path.stat().st_size > 40 * PAGE
    return path


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def assert_damaged(path: Path, *words: str) -> None:
    with pytest.raises(StoreDamaged) as info:
        SQLiteStore(path)
    msg = str(info.value)
    assert f"the store {path} is damaged" in msg
    assert f"move {path.parent} aside" in msg and "start the node again" in msg
    assert "catches up" in msg
    for word in words:
        assert word in msg


def test_garbage_over_the_file_is_damage(store_file):
    size = store_file.stat().st_size
    store_file.write_bytes(random.Random(0).randbytes(size))
    assert_damaged(store_file, "file is not a database")


def test_a_bad_header_is_damage(store_file):
    overwrite(store_file, 0, b"not sqlite")
    assert_damaged(store_file, "file is not a database")


@pytest.mark.parametrize("cut", ["half", "half+123", "one page", "50 bytes", "last page"])
def test_a_truncated_file_is_damage(store_file, cut):
    size = store_file.stat().st_size
    keep = {"half": size // 2 // PAGE * PAGE, "half+123": size // 2 + 123, "one page": PAGE,
            "50 bytes": 50, "last page": size - PAGE}[cut]
    truncate(store_file, keep)
    assert_damaged(store_file, "malformed")


@pytest.mark.parametrize("page", [2, "middle", "last"])
@pytest.mark.parametrize("fill", ["zeros", "garbage"])
def test_an_overwritten_page_is_damage(store_file, page, fill):
    pages = store_file.stat().st_size // PAGE
    number = {"middle": pages // 2, "last": pages}.get(page, page)
    data = bytes(PAGE) if fill == "zeros" else random.Random(number).randbytes(PAGE)
    overwrite(store_file, (number - 1) * PAGE, data)
    assert_damaged(store_file, "malformed")


def test_a_wrong_freelist_count_is_found_by_the_integrity_check(store_file):
    """The structure is readable, so integrity_check answers with what it found (rows) rather
    than raising: the store reports those."""
    overwrite(store_file, 36, struct.pack(">I", 5))  # header: number of freelist pages
    assert_damaged(store_file, "freelist", "should be 5")


def test_moving_a_damaged_store_aside_lets_the_node_start_empty(store_file):
    overwrite(store_file, 0, b"not sqlite")
    with pytest.raises(StoreDamaged):
        SQLiteStore(store_file)
    shutil.move(store_file, store_file.with_name("aside"))  # what the message says to do
    fresh = SQLiteStore(store_file)
    assert fresh.load() == {}
    fresh.close()


def _raw(path: Path, key: bytes, value: bytes) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))
    db.close()


@pytest.mark.parametrize("key,value", [
    (msgpack.packb("k"), b"\xc1"),                       # never valid msgpack
    (msgpack.packb("k"), b""),                           # nothing
    (msgpack.packb("k"), msgpack.packb([1, 2]) + b"x"),  # trailing bytes
    (msgpack.packb("k"), msgpack.packb([1, 2])[:-1]),    # cut short
    (b"\xc1", msgpack.packb(1)),                         # the key does not decode
    (msgpack.packb({"a": 1}), msgpack.packb(1)),         # a key that is not hashable
])
def test_a_row_that_does_not_decode_is_damage_on_load(store_file, key, value):
    _raw(store_file, key, value)
    store = SQLiteStore(store_file)  # the file itself is sound
    with pytest.raises(StoreDamaged, match="a row does not decode") as info:
        store.load()
    assert f"move {store_file.parent} aside" in str(info.value)
    store.close()


# ------------------------------------------------- what SQLite does not detect


def test_sqlite_does_not_detect_changed_row_bytes(store_file):
    """No page checksums: a byte changed inside a value is read back changed."""
    data = store_file.read_bytes()
    at = data.index(MARK)
    assert data.count(MARK) == 1
    overwrite(store_file, at + 10, b"\x00")
    assert reopen(store_file)["marked"] == MARK[:10] + b"\x00" + MARK[11:]


def test_sqlite_opens_a_file_truncated_to_nothing_as_an_empty_store(store_file):
    """An empty file is a new database to SQLite, so a store cut to zero bytes comes back
    empty rather than damaged: the node rejoins as if new."""
    truncate(store_file, 0)
    assert reopen(store_file) == {}


def test_sqlite_ignores_garbage_after_the_last_page(store_file):
    with open(store_file, "ab") as f:
        f.write(random.Random(1).randbytes(3 * PAGE))
    assert len(reopen(store_file)) == 2001


def test_a_damaged_wal_frame_silently_drops_its_commit_and_the_later_ones(tmp_path):
    """Commits still only in the WAL (the node crashed before a checkpoint): a frame whose
    checksum fails ends the log, so that commit and every one after it are gone, and
    SQLite reports nothing."""
    live = tmp_path / "live" / "s.sqlite3"
    store = SQLiteStore(live)
    for i in range(3):
        store.put(("k", i), i)
        store.request_sync()
        store.sync_now()
    wal = live.with_name(live.name + "-wal").read_bytes()
    frame = 24 + PAGE  # the WAL header is 32 bytes; each frame a 24-byte header + a page
    assert (len(wal) - 32) % frame == 0
    crashed = tmp_path / "crashed" / "s.sqlite3"
    crashed.parent.mkdir()
    shutil.copy(live, crashed)
    damaged = bytearray(wal)
    damaged[len(wal) - 100] ^= 0xFF  # inside the last frame: the last commit
    crashed.with_name(crashed.name + "-wal").write_bytes(damaged)
    assert reopen(crashed) == {("k", 0): 0, ("k", 1): 1}
    store.close()
    assert reopen(live) == {("k", i): i for i in range(3)}


@pytest.mark.trio
async def test_a_cancelled_committer_is_not_a_failed_commit(tmp_path):
    """Stopping the node while a commit is about to start writes nothing and fails
    nothing: the batch is buffered again (oldest first) and a later committer makes it
    durable."""
    path = tmp_path / "s.sqlite3"
    store = SQLiteStore(path)
    store.put("a", 1)
    number = store.request_sync()
    with trio.CancelScope() as scope:
        scope.cancel()  # cancelled at the committer's first checkpoint
        await store.run()
    assert store.failed is None and store.committing is None and store.durable == 0
    store.put("b", 2)
    store.request_sync()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run)
        await store.wait(number)
        nursery.cancel_scope.cancel()
    store.close()
    assert reopen(path) == {"a": 1, "b": 2}
