"""The specification, run against every registered policy.

A policy registered with ``graphrep.spec.register_policy`` gets a ``TestSpec_<name>``
class here, so it runs the whole stateful specification without a copied test.
"""

from __future__ import annotations

from hypothesis import settings

from graphrep.spec import policy_names
from graphrep.spec.machine import spec_machine

for _name in policy_names():
    _case = spec_machine(_name).TestCase
    _case.settings = settings(settings.default, stateful_step_count=50)
    globals()[f"TestSpec_{_name}"] = _case
del _case, _name
