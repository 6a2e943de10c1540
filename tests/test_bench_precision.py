"""The benchmark's precision pick and `--only`: which row is chosen "at LACE's error" (no timing is asserted)."""

import pytest

from tests.cli_helpers import load_script


@pytest.fixture(scope="module")
def sampling():
    return load_script("benchmarks/sampling.py", "bench_sampling_precision")


def _row(policy, config, ratio, err, acc=0.2, algorithm=None):
    return dict(policy=policy, config=config, ratio=ratio, jax_s=1 / ratio, jax_err_max=err, torch_err_max=0.02,
                jax_acc=acc, torch_acc=0.2, meets_lace_error=err <= 1.02 * 0.02,
                algorithm=algorithm or {"highest": "f32", "tf32": "tf32 operands, f32 accumulation",
                                        "bf16": "bf16 operands, f32 accumulation"}[policy])


def test_pick_is_the_fastest_row_at_lace_error_and_accuracy(sampling):
    rows = [_row("highest", "compat", 3.0, 0.0201), _row("highest", "best", 8.0, 0.018),
            _row("tf32", "best", 12.0, 0.0185), _row("bf16", "best", 25.0, 0.026),        # too inaccurate
            _row("bf16", "compat", 20.0, 0.019, acc=0.15),                                 # accuracy lost
            dict(policy="tf32", config="compat", batch=4096, algorithm="f32", error="refused")]
    pick = sampling.precision_pick(rows)
    assert (pick["policy"], pick["config"], pick["ratio"]) == ("tf32", "best", 12.0)
    # tf32 that runs float32 (a CPU) is the highest program again: never the pick, even when timed faster
    cpu = [_row("highest", "best", 5.0, 0.018), _row("tf32", "best", 5.5, 0.018, algorithm="f32")]
    if sampling.MP.algorithm("tf32") == "f32":
        assert sampling.precision_pick(cpu)["policy"] == "highest"
    assert sampling.precision_pick([_row("bf16", "best", 25.0, 0.03)]) is None


def test_only_skips_every_other_section(sampling):
    skip = sampling._AllBut(["precision"])
    assert "precision" not in skip and "compat" in skip and "a_section_added_later" in skip
