"""The process interface module stands alone; RNG streams are per component and stable."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from graphrep.errors import InvalidArgument
from graphrep.sim.process import CancelTimer, DurableWrite, Log, Metric, Send, SetTimer, Sync
from graphrep.sim.rng import RandomStreams, stream_seed


def test_effects_are_immutable_values():
    for effect in (Send("a", 1, 2), SetTimer("t", 5), CancelTimer("t"), DurableWrite("k", 1),
                   Sync(), Metric("m", 1.0), Log("x")):
        assert not hasattr(effect, "__dict__")
        if effect._fields:
            with pytest.raises(AttributeError):
                setattr(effect, effect._fields[0], 1)
    assert Send("a", (1, 2), 3) == Send("a", (1, 2), 3)
    assert Send(to="a", payload=None) == Send("a", None, 0)
    assert SetTimer("t", 5).periodic is False


@pytest.mark.parametrize("module", ["graphrep.sansio", "graphrep.sim.process"])
def test_process_interface_does_not_import_the_engine(module: str):
    code = (f"import sys, {module}; "
            "print(any(m in sys.modules for m in "
            "('graphrep.sim.engine', 'graphrep.sim.network', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_same_name_same_stream_and_names_are_independent():
    a = RandomStreams(3).generator("link:a->b").random(5)
    b = RandomStreams(3).generator("link:a->b").random(5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, RandomStreams(3).generator("link:b->a").random(5))
    assert not np.array_equal(a, RandomStreams(4).generator("link:a->b").random(5))


def test_adding_a_component_does_not_shift_others():
    one = RandomStreams(9)
    x = one.generator("x").random(4)
    two = RandomStreams(9)
    two.generator("new").random(100)
    assert np.array_equal(two.generator("x").random(4), x)


def test_generator_is_cached_so_a_stream_continues():
    s = RandomStreams(1)
    first = s.generator("w").random(3)
    second = s.generator("w").random(3)
    assert np.array_equal(np.concatenate([first, second]),
                          RandomStreams(1).generator("w").random(6))


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seed_is_rejected(seed):
    with pytest.raises(InvalidArgument):
        stream_seed(seed, "x")
