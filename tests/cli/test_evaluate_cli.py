"""evaluate.py as a user runs it: conditions and sweeps write parseable results; bad input exits 2."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


def test_conditions_write_results(tmp_path):
    out = tmp_path / "out"
    proc = _run("--expr", "background=black", "--expr", "shape=circle | shape=star", "--num_samples", "12",
                "--num_real", "100", "--out_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    assert [r["expr"] for r in rows] == ["background=black", "shape=circle | shape=star"]
    assert rows[0]["accuracy"] > rows[0]["base_rate"] + 0.3 and rows[0]["fd"] > 0
    assert res["environment"]["versions"]["jax"] and res["num_real"] == 100
    from lace_jax.models import precision
    assert res["config"]["precision"] == "auto" and res["precision"] == precision.resolve("auto")
    md = (out / "results.md").read_text()
    assert md.startswith("| expr |") and "shape=circle \\| shape=star" in md


def test_sweep_writes_table(tmp_path, tmp_path_factory):
    cfg = tmp_path / "tiny_sweep.py"
    cfg.write_text("def get_config():\n    return {'num_samples': 8, 'expressions': {'shapes': ['background=black']},"
                   "\n            'grid': [{'sampler': 'ode', 'solver': 'dopri5', 'rtol+atol': [1e-1, 1e-3]},"
                   "\n                     {'sampler': 'sgld', 'num_steps': 5}]}\n")
    out = tmp_path / "out"
    proc = _run("--sweep", str(cfg), "--num_real", "50", "--out_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 3 and all("judge_accuracy" in r["metrics"] and "fd" in r["metrics"] for r in rows)
    assert rows[1]["nfe"] >= rows[0]["nfe"]          # tighter tolerance, more evaluations
    assert "judge_accuracy" in (out / "results.md").read_text()
    for r in rows:                                   # the fit judge's verdicts beside the CNN judge's
        m = r["metrics"]
        assert 0.0 <= m["fit_accuracy"] <= m["realistic"] <= 1.0 and 0.0 <= m["fit_base_rate"] <= 1.0
    assert "fit_accuracy" in (out / "results.md").read_text()


@pytest.mark.parametrize("args,needle", [
    (["--expr", "colour=red"], "unknown attribute 'colour'"),
    (["--expr", "background=purple"], "purple"),
    (["--expr", "shape=circle &"], "column"),
    (["--config", "toy2d"], "no image judge"),
    (["--config", "ffhq", "--checkpoint_dir", "/nonexistent"], "python -m ports.convert"),
])
def test_bad_input_exits_2(tmp_path, args, needle):
    out = tmp_path / "out"
    proc = _run(*args, "--out_dir", str(out))
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()


def test_research_configs_refuse_condition_flags_and_need_their_workdir(tmp_path):
    for args, msg in [(["--config", "directions_shapes", "--expr", "shape=circle"], "runs a study"),
                      (["--config", "diffusion_latent"], "needs --checkpoint_dir")]:
        r = subprocess.run([sys.executable, str(REPO / "evaluate.py"), *args, "--out_dir", str(tmp_path / "o")],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr[-500:])
        assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize("extra,needle", [
    ([], "no record.json: not a (complete) sample.py output folder"),
    (["--expr", "shape=star"], "drop --expr"),
])
def test_samples_dir_that_is_not_a_sample_output_exits_2(tmp_path, extra, needle):
    (tmp_path / "samples.npz").write_bytes(b"")
    out = tmp_path / "out"
    proc = _run("--samples_dir", str(tmp_path), *extra, "--out_dir", str(out))
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_samples_dir_scores_a_sample_run(tmp_path):
    """sample.py, then evaluate.py --samples_dir on its folder: a row per condition, as evaluate.py writes."""
    sampled = tmp_path / "sampled"
    proc = subprocess.run([sys.executable, str(REPO / "sample.py"), "--expr", "background=black", "--expr",
                           "shape=star", "--num_samples", "6", "--chunk_size", "4", "--solver", "euler",
                           "--num_steps", "4", "--out_dir", str(sampled)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "scores"
    proc = _run("--samples_dir", str(sampled), "--num_real", "50", "--out_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert [r["expr"] for r in res["rows"]] == ["background=black", "shape=star"]
    assert all(r["num_samples"] == 6 and r["nfe"] == 4 and "fd_matched" in r for r in res["rows"])
    assert res["samples_dir"] == "…/sampled" and res["num_real"] == 50     # no user directory in results
    assert (out / "results.md").read_text().startswith("| expr |")
