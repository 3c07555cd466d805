"""graphrep.sim: a deterministic network simulator for sans-IO processes.

Modules, each with one job: ``process`` (the interface a protocol implements: callbacks
in, effects out), ``rng`` (per-component random streams), ``network`` (latency, loss,
duplication, partitions), ``trace`` (records, canonical hash, JSONL) and ``engine``
(the event loop, ``Simulation``).

This package deliberately re-exports nothing. The process interface itself lives in
``graphrep.sansio`` (re-exported as ``graphrep.sim.process``), so that protocol code can
depend on it without the simulator.
"""
