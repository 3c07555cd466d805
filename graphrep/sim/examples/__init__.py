"""Small protocols written the way a protocol author would, with Maelstrom-style checkers.

* :mod:`~graphrep.sim.examples.broadcast`: gossip broadcast of distinct values;
* :mod:`~graphrep.sim.examples.counter`: a grow-only counter (G-counter CRDT);
* :mod:`~graphrep.sim.examples.harness`: what both share: the client workload, the named
  nemeses, the run loop, the server skeleton (``GossipNode``) and the runner
  (``Example``).

Each protocol is a ``GossipNode`` (a :class:`~graphrep.sim.process.BaseProcess`)
subclass that returns effects and never touches the engine; each has planted bugs
(``bug=``) so that tests can show Hypothesis finding and shrinking a failing fault
schedule. ``run_broadcast`` and ``run_counter`` (``BROADCAST.run``, ``COUNTER.run``) run
one scenario and return a JSON-able summary; the ``simulate_*`` variants also keep the
simulation (its trace feeds :mod:`graphrep.sim.plots`).
"""
