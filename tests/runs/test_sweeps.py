"""lace_jax.runs.sweeps: grid expansion, Boolean success of expressions, one compilation per static structure (traced
tolerances/step sizes/targets/seeds give the static path's numbers), success far above the unconditional rate."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from lace_jax import energy as en
from lace_jax import samplers
from lace_jax.runs import sweeps
from lace_jax import worlds
from lace_jax.config import load_config


@pytest.fixture(scope="module")
def toy():
    return worlds.world_from_config("toy2d")


def test_expand_crosses_lists_and_ties_plus_keys():
    s = sweeps.expand([{"sampler": "ode", "rtol+atol": [1e-1, 1e-3]},
                       {"sampler": "sgld", "step_size": [1e-3, 1e-2], "num_steps": [10, 100, 1000]}])
    assert len(s) == 2 + 6
    assert s[1] == {"sampler": "ode", "rtol": 1e-3, "atol": 1e-3}
    assert s[-1] == {"sampler": "sgld", "step_size": 1e-2, "num_steps": 1000}


@pytest.mark.parametrize("name, n", [("sweep_robustness", 5 + 6 + 9), ("sweep_composition", 3 * 6)])
def test_sweep_configs_expand_for_toy2d(name, n, toy):
    cfg = load_config(name)
    settings = sweeps.settings_from_config(cfg, "toy2d")
    assert len(settings) == n
    for s in settings:
        en.parse(s["expr"], toy.attributes)      # every expression names toy2d attributes
    tols = sorted({s["rtol"] for s in settings if s.get("solver") == "dopri5"})
    if name == "sweep_robustness":
        assert tols == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
        assert sorted(s["num_steps"] for s in settings if s.get("solver") == "euler") == [2, 5, 10, 20, 50, 100]
    with pytest.raises(ValueError, match="no expressions for world 'nowhere'"):
        sweeps.settings_from_config(cfg, "nowhere")
    from lace_jax.worlds.shapes import load_default
    shapes_attrs = load_default().attributes
    for s in sweeps.settings_from_config(cfg, "shapes"):
        en.parse(s["expr"], shapes_attrs)        # ... and the shipped model's


def test_expression_satisfied_boolean_logic(toy):
    z = np.array([[1.5, 1.5], [-1.5, -1.5], [1.5, -1.5], [np.nan, np.nan], [0.05, 2.0]], np.float32)
    sat, atoms = sweeps.expression_satisfied("cluster=ne | cluster=sw", toy.attributes, z)
    np.testing.assert_array_equal(sat, [True, True, False, False, True])     # NaN rows never count
    sat, _ = sweeps.expression_satisfied("right=yes & !top=yes", toy.attributes, z)
    np.testing.assert_array_equal(sat, [False, False, True, False, False])
    sat, atoms = sweeps.expression_satisfied("radius=2 & x=0", toy.attributes, z)     # |f − y| < 0.1
    np.testing.assert_array_equal(sat, [False, False, False, False, True])
    assert list(atoms) == ["radius=2", "x=0"]
    np.testing.assert_array_equal(atoms["radius=2"], [False, False, False, False, True])


def test_sweep_compiles_once_per_structure_and_succeeds(toy, tmp_path):
    runner = sweeps.Runner()
    ode = [{"sampler": "ode", "rtol": t, "atol": t, "expr": e, "seed": s}
           for t in (1e-2, 1e-3) for e in ("cluster=ne", "cluster=sw") for s in (0, 1)]
    sgld = [{"sampler": "sgld", "step_size": a, "num_steps": 50, "expr": "cluster=ne"} for a in (1e-2, 5e-2)]
    rows = sweeps.run_sweep(toy, ode + sgld, num_samples=48, seed=0, runner=runner)
    # 8 ODE rows (2 tolerances × 2 targets × 2 seeds) share one executable; the 2 SGLD rows another
    assert runner.compiles == 2 and runner.traces == 2
    assert [r["compile_s"] > 0 for r in rows] == [True] + [False] * 7 + [True, False]
    for r in rows[:8]:
        assert r["metrics"]["num_failed"] == 0
        assert r["metrics"]["accuracy"] >= 0.9, r           # conditional success
        assert r["metrics"]["base_rate"] <= 0.45, r         # unconditional: about 1/4 per cluster
    at_1e3 = [r for r in rows if r["setting"].get("rtol") == 1e-3]
    assert min(r["metrics"]["accuracy"] for r in at_1e3) - max(r["metrics"]["base_rate"] for r in at_1e3) > 0.5
    # tighter tolerance costs more evaluations
    assert np.mean([r["nfe"] for r in at_1e3]) > np.mean([r["nfe"] for r in rows[:4]])
    assert rows[8]["nfe"] == 50

    table = sweeps.to_markdown(rows)
    lines = table.strip().split("\n")
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| sampler | expr | rtol | atol | seed |") and "accuracy" in lines[0]
    out = sweeps.write(rows, tmp_path / "sweep", extra={"world": "toy2d"})
    data = json.loads((out / "rows.json").read_text())
    assert len(data["rows"]) == 10 and data["world"] == "toy2d"
    assert (out / "table.md").read_text() == table


def test_traced_tolerances_match_static_path(toy):
    """A traced rtol/atol gives the numbers of the static (Python float) path: same z, same NFE."""
    cond = en.parse("cluster=ne & radius=2", toy.attributes)
    z0 = jax.random.normal(jax.random.PRNGKey(3), (8, 2))
    key = jax.random.PRNGKey(4)
    opts = samplers.SamplerOptions(rtol=1e-3, atol=1e-3)
    out, _, _ = sweeps.Runner()("ode", cond, z0, key, opts)
    ref = jax.jit(samplers.run, static_argnums=(1, 4))(key, "ode", cond, z0, opts)
    np.testing.assert_array_equal(np.asarray(out.stats["nfe"]), np.asarray(ref.stats["nfe"]))
    np.testing.assert_allclose(np.asarray(out.z), np.asarray(ref.z), rtol=1e-6, atol=1e-6)
