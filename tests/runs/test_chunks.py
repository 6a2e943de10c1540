"""lace_jax.runs.chunks: per-sample keys (chunk-size and device-count invariance), resumable chunks, failures kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy
from lace_jax.runs import chunks
from lace_jax.worlds import toy2d
from lace_jax import samplers
from tests.runs.toys import PARAMS, toy_per_sample

REPO = Path(__file__).resolve().parents[2]




def _expected(seed: int, n: int) -> np.ndarray:
    keys = jax.vmap(lambda i: chunks.sample_key(seed, i))(jnp.arange(n))
    z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys)) * 1.5 + 0.25
    return z


def test_keys_per_sample_independent_of_chunk_size():
    ref = _expected(5, 23)
    for chunk in (4, 23, 50):
        r = chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=chunk, seed=5)
        ok = ref[:, 0] >= -1
        np.testing.assert_array_equal(r.success, ok)
        np.testing.assert_allclose(r.z[ok], ref[ok], rtol=1e-6, atol=1e-6)
        assert np.isnan(r.z[~ok]).all()
        # failures are carried through and listed, never dropped
        np.testing.assert_array_equal(r.failed_indices, np.flatnonzero(~ok))
        assert 0 < len(r.failed_indices) < 23
        np.testing.assert_array_equal(r.stats["nfe"], 7 + np.arange(23) % 3)


def test_resume_after_interruption_recomputes_nothing(tmp_path):
    calls: list[int] = []

    def counted(params, key, index):
        jax.debug.callback(lambda i: calls.extend(np.asarray(i).ravel().tolist()), index)
        return toy_per_sample(params, key, index)

    full = chunks.generate(toy_per_sample, PARAMS, num_samples=18, chunk_size=4, seed=1)   # 5 chunks

    seen = []

    def stop_after_two(p: chunks.Progress):
        seen.append(p)
        if p.computed and sum(q.computed for q in seen) == 2:
            raise KeyboardInterrupt("simulated interruption")

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        chunks.generate(counted, PARAMS, num_samples=18, chunk_size=4, seed=1, out_dir=out,
                          progress=stop_after_two, fingerprint={"sampler": "toy"})
    assert sorted(p.name for p in (out / "chunks").glob("chunk_*.npz")) == ["chunk_00000.npz", "chunk_00001.npz"]
    assert sorted(calls) == list(range(8))
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")}

    calls.clear()
    lines = []
    res = chunks.generate(counted, PARAMS, num_samples=18, chunk_size=4, seed=1, out_dir=out,
                            progress=lambda p: lines.append(p), fingerprint={"sampler": "toy"})
    assert res.computed_chunks == (2, 3, 4)
    assert sorted(calls) == list(range(8, 20))          # chunks 2..4 (the last one padded to 4 lanes)
    assert [p.computed for p in lines] == [False, False, True, True, True]
    assert lines[-1].done == 18 and lines[-1].failures == int((~full.success).sum())
    for name, t in mtimes.items():                       # finished chunks were not rewritten
        assert (out / "chunks" / name).stat().st_mtime_ns == t
    np.testing.assert_array_equal(res.success, full.success)
    np.testing.assert_array_equal(np.nan_to_num(res.z, nan=123.0), np.nan_to_num(full.z, nan=123.0))
    np.testing.assert_array_equal(res.failed_indices, full.failed_indices)
    merged = np.load(out / "samples.npz")
    np.testing.assert_array_equal(merged["success"], full.success)

    # a third run finds everything on disk
    calls.clear()
    again = chunks.generate(counted, PARAMS, num_samples=18, chunk_size=4, seed=1, out_dir=out,
                              fingerprint={"sampler": "toy"})
    assert again.computed_chunks == () and calls == []


def test_incomplete_chunk_is_recomputed_and_other_runs_refused(tmp_path):
    out = tmp_path / "run"
    chunks.generate(toy_per_sample, PARAMS, num_samples=8, chunk_size=4, seed=2, out_dir=out)
    (out / "chunks" / "chunk_00001.npz").write_bytes(b"PK\x03\x04 truncated")
    res = chunks.generate(toy_per_sample, PARAMS, num_samples=8, chunk_size=4, seed=2, out_dir=out)
    assert res.computed_chunks == (1,)
    with pytest.raises(chunks.BatchError, match="seed"):
        chunks.generate(toy_per_sample, PARAMS, num_samples=8, chunk_size=4, seed=3, out_dir=out)
    with pytest.raises(chunks.BatchError, match="chunk_size"):
        chunks.generate(toy_per_sample, PARAMS, num_samples=8, chunk_size=2, seed=2, out_dir=out)


def test_manifest_names_no_directory_yet_tells_model_folders_apart(tmp_path, monkeypatch):
    model = tmp_path / "users" / "zoe" / "models" / "default"      # a name no hex digest can contain
    out = tmp_path / "run"
    fp = {"config": {"model_dir": str(model), "name": "shapes"}}
    chunks.generate(toy_per_sample, PARAMS, num_samples=4, chunk_size=2, seed=0, out_dir=out, fingerprint=fp)
    text = (out / "chunks" / "manifest.json").read_text()
    assert str(tmp_path) not in text and "zoe" not in text
    written = json.loads(text)["fingerprint"]["config"]["model_dir"]
    assert written.startswith("…/default#") and len(written) == len("…/default#") + 16
    # the same folder from another working directory resumes; another folder of the same name is refused
    monkeypatch.chdir(tmp_path)
    res = chunks.generate(toy_per_sample, PARAMS, num_samples=4, chunk_size=2, seed=0, out_dir=out, fingerprint=fp)
    assert res.computed_chunks == ()
    other = {"config": {"model_dir": str(tmp_path / "elsewhere" / "default"), "name": "shapes"}}
    with pytest.raises(chunks.BatchError, match="fingerprint"):
        chunks.generate(toy_per_sample, PARAMS, num_samples=4, chunk_size=2, seed=0, out_dir=out, fingerprint=other)


def test_a_manifest_written_with_absolute_paths_still_resumes(tmp_path):
    out = tmp_path / "run"
    fp = {"config": {"model_dir": str(tmp_path / "models" / "default")}}
    first = chunks.generate(toy_per_sample, PARAMS, num_samples=4, chunk_size=2, seed=0, out_dir=out, fingerprint=fp)
    path = out / "chunks" / "manifest.json"
    old = json.loads(path.read_text())
    old["fingerprint"]["config"]["model_dir"] = str(tmp_path / "models" / "default")   # as written before
    path.write_text(json.dumps(old))
    again = chunks.generate(toy_per_sample, PARAMS, num_samples=4, chunk_size=2, seed=0, out_dir=out, fingerprint=fp)
    assert again.computed_chunks == ()
    np.testing.assert_array_equal(again.z, first.z)
    assert json.loads(path.read_text()) == old           # kept as it was


def test_sampler_fn_matches_batch_of_one_runs(tmp_path):
    """The per-sample wrapper around samplers.run: SGLD on the 2-D world equals direct batch-1 calls."""
    cond = energy.parse("cluster=ne", toy2d.attributes())
    opts = samplers.SamplerOptions(num_steps=5, step_size=0.05, noise_scale=0.3)
    per = samplers.sampler_fn("sgld", opts, 2)
    res = chunks.generate(per, cond, num_samples=3, chunk_size=2, seed=4, out_dir=tmp_path / "run",
                            fingerprint={"sampler": "sgld", "options": opts, "expr": "cluster=ne"})
    manifest = json.loads((tmp_path / "run" / "chunks" / "manifest.json").read_text())
    assert manifest["fingerprint"]["options"]["step_size"] == 0.05 and manifest["num_samples"] == 3
    for i in range(3):
        k0, k1 = jax.random.split(chunks.sample_key(4, i))
        z0 = jax.random.normal(k0, (1, 2))
        ref = samplers.run(k1, "sgld", cond, z0, opts)
        np.testing.assert_allclose(res.z[i], np.asarray(ref.z[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(res.stats["nfe"], [5, 5, 5])


_SUBPROCESS = textwrap.dedent("""
    import sys, numpy as np, jax
    from lace_jax import energy
    from lace_jax.runs import chunks
    from lace_jax.worlds import toy2d
    from lace_jax import samplers
    assert len(jax.devices()) == 4, jax.devices()
    cond = energy.parse("cluster=ne", toy2d.attributes())
    per = samplers.sampler_fn("sgld", samplers.SamplerOptions(num_steps=5, step_size=0.05, noise_scale=0.3), 2)
    r = chunks.generate(per, cond, num_samples=10, chunk_size=5, seed=9)   # 5 -> padded to 8 over 4 devices
    np.savez(sys.argv[1], z=r.z, success=r.success)
""")


def test_four_devices_same_samples_as_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "four.npz"
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(out)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    four = np.load(out)
    cond = energy.parse("cluster=ne", toy2d.attributes())
    per = samplers.sampler_fn("sgld", samplers.SamplerOptions(num_steps=5, step_size=0.05, noise_scale=0.3), 2)
    one = chunks.generate(per, cond, num_samples=10, chunk_size=3, seed=9)
    assert len(jax.devices()) == 1
    np.testing.assert_array_equal(four["success"], one.success)
    np.testing.assert_allclose(four["z"], one.z, rtol=1e-5, atol=1e-5)


def test_per_sample_targets_from_the_index():
    """`energy_for_index` builds sample i's energy from its index (here cluster = i mod 4), inside the jit."""
    fn = toy2d.attributes()["cluster"].fn
    opts = samplers.SamplerOptions(num_steps=40, step_size=0.05, noise_scale=0.05)
    per = samplers.sampler_fn("sgld", opts, 2, energy_for_index=lambda f, i: energy.discrete(f, i % 4))
    res = chunks.generate(per, fn, num_samples=16, chunk_size=8, seed=0)
    assigned = np.asarray(jax.vmap(fn)(jnp.asarray(res.z))).argmax(-1)
    np.testing.assert_array_equal(assigned, np.arange(16) % 4)
