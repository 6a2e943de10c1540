"""The benchmark's timing helper: which calls are timed, which are warm-ups, and what `switch_median` is.

No timing is asserted (speed belongs in benchmarks/); the callables record their own call order."""

import pytest

from tests.cli_helpers import load_script


@pytest.fixture(scope="module")
def sampling():
    # torch is imported lazily by the benchmark, never at module level
    return load_script("benchmarks/sampling.py", "bench_sampling")


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


def test_compile_summary_takes_the_slowest_compile_and_the_growth_per_variant(sampling):
    rows = [dict(variant="default", config="compat", batch=b, compile_s=s) for b, s in ((4096, 6.0), (1, 2.0))]
    rows += [dict(variant="autotune0", config="compat", batch=1, compile_s=1.5),
             dict(variant="default", config="best", error="timeout")]
    out = sampling.compile_summary(rows)
    assert out == {"compile_max_s_compat": 6.0, "compile_growth_compat": 3.0, "compile_max_s_autotune0_compat": 1.5}
