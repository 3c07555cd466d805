"""Per-component random streams derived from (master seed, component name).

Each link, node, nemesis or workload draws from its own generator, seeded by the master
seed plus a stable hash of the component's name. Adding a component, or drawing more
from one, therefore never shifts another component's draws, which keeps a shrunk fault
schedule replaying the same network behaviour. The name hash is blake2b, never Python's
``hash()``, which changes with PYTHONHASHSEED.
"""

from __future__ import annotations

import hashlib

import numpy as np

from graphrep.errors import InvalidArgument

__all__ = ["RandomStreams", "stream_seed"]


def stream_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The seed sequence of component ``name`` under master ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidArgument(f"master seed must be a non-negative int, got {seed!r}")
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    words = tuple(int(w) for w in np.frombuffer(digest, dtype="<u4"))
    return np.random.SeedSequence(entropy=seed, spawn_key=words)


class RandomStreams:
    """A cache of named generators: asking twice for a name continues the same stream."""

    def __init__(self, seed: int) -> None:
        stream_seed(seed, "")  # validate early
        self.seed = seed
        self._generators: dict[str, np.random.Generator] = {}

    def generator(self, name: str) -> np.random.Generator:
        """The generator of component ``name`` (created on first use)."""
        gen = self._generators.get(name)
        if gen is None:
            gen = np.random.Generator(np.random.PCG64(stream_seed(self.seed, name)))
            self._generators[name] = gen
        return gen
