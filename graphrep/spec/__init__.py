"""The specification: invariants of replicated graph indexes, checked under faults.

* :mod:`graphrep.spec.steps`: the steps that drive a world, as plain data, and what each
  does to it.
* :mod:`graphrep.spec.invariants`: the invariants, checked during the run and at the end.
* :mod:`graphrep.spec.client`: the world's client process (acknowledgements, searches,
  session tokens).
* :mod:`graphrep.spec.world`: a sharded, replicated index in the simulator that ties them
  together (``SpecWorld``, ``WorldConfig``, ``replay``).
* :mod:`graphrep.spec.registry`: register a policy, get the whole specification.
* :mod:`graphrep.spec.machine`: Hypothesis stateful machines over the world.
* :mod:`graphrep.spec.fuzz`: seeded system-level fuzzing (``graphrep fuzz``).
* :mod:`graphrep.spec.mutants`: planted bugs the specification must catch
  (``graphrep mutants``).
"""

from graphrep.spec.registry import (
    PolicySpec,
    get_policy,
    policy_names,
    register_policy,
    unregister_policy,
)
from graphrep.spec.steps import STEP_KINDS, Step
from graphrep.spec.world import SpecWorld, WorldConfig, replay

__all__ = ["STEP_KINDS", "PolicySpec", "SpecWorld", "Step", "WorldConfig", "get_policy",
           "policy_names", "register_policy", "replay", "unregister_policy"]
