"""The specification: invariants of replicated graph indexes, checked under faults.

* :mod:`graphrep.spec.world`: a sharded, replicated index in the simulator, driven by
  steps (plain data), with the invariants checked during the run and at the end.
* :mod:`graphrep.spec.registry`: register a policy, get the whole specification.
* :mod:`graphrep.spec.machine`: Hypothesis stateful machines over the world.
* :mod:`graphrep.spec.fuzz`: seeded system-level fuzzing (``graphrep fuzz``).
* :mod:`graphrep.spec.mutants`: planted bugs the specification must catch
  (``graphrep mutants``).
"""

from graphrep.spec.registry import PolicySpec, get_policy, policy_names, register_policy
from graphrep.spec.world import STEP_KINDS, SpecWorld, Step, WorldConfig, replay

__all__ = ["STEP_KINDS", "PolicySpec", "SpecWorld", "Step", "WorldConfig", "get_policy",
           "policy_names", "register_policy", "replay"]
