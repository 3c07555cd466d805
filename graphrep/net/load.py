"""Drive a running cluster with writes: ``graphrep load`` and the live demo use this.

:func:`drive` runs a list of writes through one :class:`~graphrep.net.client.Client`
with ``concurrency`` writes outstanding, records every one in the client's history, and
returns a summary (acknowledged, failed, skipped, writes/s, latency p50/p99). A write
that fails (no leader acknowledged it in the client's timeout) is counted and the load
goes on: its fate is unknown, and only acknowledged writes are promised. A delete whose
insert (in the same call) failed is skipped: counted, never sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import trio

from graphrep.errors import GraphrepError, InvalidArgument
from graphrep.net.client import Client

__all__ = ["DATASETS", "Op", "dataset", "drive", "latency_summary", "plan"]

DATASETS = ("gmm", "uniform", "fmnist")

Op = tuple[str, int, Any]
"""A write: ``("insert", id, vector)`` or ``("delete", id, None)``."""


def dataset(name: str, n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` vectors of ``dim`` dimensions (``fmnist``: 784, its own)."""
    from graphrep import datasets

    if name == "gmm":
        return datasets.gaussian_mixture(n, dim, seed=seed)
    if name == "uniform":
        return datasets.uniform(n, dim, seed=seed)
    if name == "fmnist":
        base, _ = datasets.load_fashion_mnist()
        if n > len(base):
            raise InvalidArgument(f"Fashion-MNIST has {len(base)} base vectors, asked {n}")
        return np.ascontiguousarray(base[:n], dtype=np.float32)
    raise InvalidArgument(f"dataset {name!r} is not one of {DATASETS}")


def plan(vectors: np.ndarray, first_id: int, deletes: int, seed: int = 0) -> list[Op]:
    """Insert every vector (ids ``first_id ...``) and delete ``deletes`` of them, each
    delete placed well after its insert (so the insert is acknowledged first)."""
    n = len(vectors)
    if deletes > n:
        raise InvalidArgument(f"cannot delete {deletes} of {n} inserted vectors")
    rng = np.random.default_rng(seed)
    doomed = sorted(rng.choice(n, size=deletes, replace=False).tolist()) if deletes else []
    ops: list[Op] = [("insert", first_id + i, vectors[i]) for i in range(n)]
    for j, i in enumerate(doomed):  # spread the deletes; each after its insert + a lag
        at = min(len(ops), max(i + 64, (j + 1) * len(ops) // (deletes + 1)) + j)
        ops.insert(at, ("delete", first_id + i, None))
    return ops


def latency_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    lat = sorted((r["done"] - r["sent"]) * 1e3 for r in rows if r["status"] == "ok")
    if not lat:
        return {"latency_ms_p50": 0.0, "latency_ms_p99": 0.0}
    return {"latency_ms_p50": round(float(np.percentile(lat, 50)), 3),
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 3)}


async def drive(client: Client, ops: Sequence[Op], *, concurrency: int = 4,
                concern: str | None = None,
                progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run ``ops`` with ``concurrency`` writes outstanding. A delete of an id that ``ops``
    inserts earlier waits for that insert's outcome, and is skipped (counted, not sent)
    if the insert failed; a delete of any other id (inserted by an earlier call, say) is
    sent as it comes. Returns the summary; the client's history has every write sent."""
    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be >= 1, got {concurrency}")
    client.record = True
    inserts_at = {id_: i for i, (op, id_, _) in enumerate(ops) if op == "insert"}
    acked: set[int] = set()  # membership only, never iterated
    inserted: dict[int, trio.Event] = {}
    counts = {"acknowledged": 0, "failed": 0, "skipped": 0}
    first = len(client.history)
    errors: list[str] = []
    started = time.perf_counter()
    queue = iter(enumerate(ops))

    async def worker() -> None:
        for i, (op, id_, vec) in queue:
            try:
                if op == "insert":
                    event = inserted.setdefault(id_, trio.Event())
                    try:
                        await client.insert(id_, vec, concern)
                        acked.add(id_)
                    finally:
                        event.set()
                else:
                    if inserts_at.get(id_, i) < i:
                        # taken by a worker already (the queue is in order), so its
                        # outcome comes within the client's timeout
                        await inserted.setdefault(id_, trio.Event()).wait()
                        if id_ not in acked:
                            counts["skipped"] += 1
                            if progress is not None:
                                progress(1)
                            continue
                    await client.delete(id_, concern)
                counts["acknowledged"] += 1
            except GraphrepError as exc:
                counts["failed"] += 1
                if len(errors) < 5:
                    errors.append(str(exc))
            if progress is not None:
                progress(1)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    elapsed = time.perf_counter() - started
    rows = client.history[first:]
    return {"writes": len(ops), **counts,
            "writes_per_s": round(counts["acknowledged"] / elapsed, 1) if elapsed else 0.0,
            "seconds": round(elapsed, 3), **latency_summary(rows), "errors": errors}
