"""The benchmark's timing helper: which calls are timed, which are warm-ups, and what `switch_median` is.

No timing is asserted (speed belongs in benchmarks/); the callables record their own call order."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sampling():
    spec = importlib.util.spec_from_file_location("bench_sampling", ROOT / "benchmarks" / "sampling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)          # torch is imported lazily by the benchmark, never at module level
    return mod


def _recorder(log, name):
    return lambda: log.append(name)


def test_alternating_calls_each_once_per_round(sampling):
    log = []
    out = sampling.interleaved(dict(a=_recorder(log, "a"), b=_recorder(log, "b")), reps=3, min_reps=3)
    assert log == ["a", "b"] * 3
    assert out["a"]["n"] == out["b"]["n"] == 3
    assert "switch_median" not in out["a"]


def test_steady_state_discards_the_call_after_each_switch(sampling):
    log = []
    out = sampling.interleaved(dict(a=_recorder(log, "a"), b=_recorder(log, "b")), reps=4, min_reps=4,
                               settle=1, per_block=2)
    assert log == (["a"] * 3 + ["b"] * 3) * 4           # per turn: 1 untimed (after the switch) + 2 timed
    assert out["a"]["n"] == out["b"]["n"] == 8
    assert out["a"]["switch_median"] >= 0.0 and out["b"]["switch_median"] >= 0.0


def test_min_reps_is_a_floor(sampling):
    log = []
    sampling.interleaved(dict(a=_recorder(log, "a")), reps=2, min_reps=5)
    assert len(log) == 5
