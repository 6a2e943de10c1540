"""LACE ODE sampling: lace_jax (JAX + Diffrax) against PyTorch + torchdiffeq, same weights, same latents, one run.

The job is LACE's CIFAR-10 setup at full size: stylegan2-ada mapping z → w (z_dim 512, c_dim 10 fed with zero c as
LACE does, 8 layers of 512, lr multiplier 0.01), LACE's `DenseEmbedder(input_dim=512, up_dim=128, depth=4,
num_classes=10)` (512→384→256→128→10) on w, the discrete energy, and the VP probability-flow ODE solved with
dopri5 at rtol = atol = 1e-3 from t = 1 to 0; then the same followed by rendering the final latents through a
32-px stylegan2-ada synthesis network (cifar spec: 512 channels at 4–32 px, skip, conv_clamp 256) — end to end.

Random weights (upstream init rules, `benchmarks/torch_reference.py`) are made once as upstream state dicts; the
torch side loads them into the reference modules, the JAX side through the project's own converters. Every figure
that compares frameworks is a ratio of medians measured interleaved in the same process (torch, jax, torch, …);
calls under a second are timed in the steady state of back-to-back calls (one untimed call after each switch
of framework, then two timed), and the first call after a switch is reported too (`*_switch`).

    python benchmarks/sampling.py --quick              # < 5 min on 2 CPU cores; one JSON object on stdout
    python benchmarks/sampling.py --out docs/perf.json --markdown docs/performance.md     # the full sweep

What is measured per configuration: wall time per batch (median of >= 5 calls after warm-up), compile time
(first call minus the median), NFE, max |z_final − z_ref| against a tight-tolerance (rtol = atol = 1e-6,
per-sample) solution, classifier accuracy (argmax of the logits at z_final == target), samples/s, peak memory
(JAX: XLA's buffer assignment of the compiled solve; torch: peak RSS growth during one solve), torch/JAX ratio.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from pathlib import Path

if "--jax-single-thread" in sys.argv:   # must be set before jax is imported
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lace_jax import energy as E  # noqa: E402
from lace_jax.models import precision as MP  # noqa: E402
from lace_jax.models import stylegan2 as S  # noqa: E402
from lace_jax.models.classifiers import LatentClassifier, MappingW  # noqa: E402
from lace_jax.samplers import ode, timechange  # noqa: E402
from ports import stylegan2_ada  # noqa: E402
from ports.lace_classifier import params_from_state_dict as dense_embedder_params_from_state_dict  # noqa: E402,E501

INIT_KWARGS = dict(z_dim=512, c_dim=10, w_dim=512, img_resolution=32, img_channels=3,
                   mapping_kwargs=dict(num_layers=8, lr_multiplier=0.01),
                   synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=256))
CLASSIFIER = dict(input_dim=512, up_dim=128, depth=4, num_classes=10)
LACE = dict(solver="dopri5", rtol=1e-3, atol=1e-3, t_end=0.0)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# FLOPs (analytic, from the layer sizes).

def drift_flops_per_sample(init_kwargs=INIT_KWARGS, clf=CLASSIFIER) -> dict:
    """Matmul FLOPs of one drift evaluation for one latent: forward (mapping + classifier) and the backward pass
    for the INPUT gradient only (one matmul per layer against the transposed weight: as many FLOPs as the
    forward); weight gradients are never formed (neither torch.autograd.grad(…, [z]) nor jax.grad w.r.t. z
    computes them). `per_eval = forward + input_grad` (≈ 2× forward; the textbook 3× counts weight gradients).
    `executed_per_eval`: what lace_jax's packed mapping runs (the fixed label's branch folded into fc0's bias, so
    fc0 is [z_dim, w] instead of [z_dim + w, w]); peak fractions use it, since that is the work the device does."""
    z, c, w = init_kwargs["z_dim"], init_kwargs["c_dim"], init_kwargs["w_dim"]
    n = init_kwargs["mapping_kwargs"]["num_layers"]
    fwd = 0
    bwd = 0
    if c:
        fwd += 2 * c * w                       # embed(c): constant under d/dz, no backward
    in_f = z + (w if c else 0)
    for _ in range(n):
        fwd += 2 * in_f * w
        bwd += 2 * in_f * w
        in_f = w
    dims = [int(d) for d in np.linspace(clf["input_dim"], clf["up_dim"], clf["depth"]).astype(int)]
    dims.append(clf["num_classes"])
    for a, b in zip(dims[:-1], dims[1:]):
        fwd += 2 * a * b
        bwd += 2 * a * b
    folded = 0
    if c:
        folded = 2 * c * w + 2 * 2 * w * w    # embed, and fc0's label half in both passes
    return dict(forward=fwd, input_grad=bwd, per_eval=fwd + bwd, three_x_forward=3 * fwd,
                executed_per_eval=fwd + bwd - folded)


def matmul_peak(n=2048, dtype=jnp.float32, reps=20) -> dict:
    """GFLOP/s of a jitted n×n×n matmul: median and best of `reps` after warm-up. Peak fractions use the best: on a
    shared VM one median came out at 212 GFLOP/s where the same machine gave 345 minutes earlier, below what the
    batch-512 drift itself reached (230)."""
    ts = _matmul_times(lambda a, b: jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST), n, dtype, reps)
    med = statistics.median(ts)
    return dict(n=n, dtype=str(jnp.dtype(dtype)), seconds=med, gflops=2 * n ** 3 / med / 1e9,
                best_gflops=2 * n ** 3 / min(ts) / 1e9)


def _matmul_times(product, n: int, dtype, reps: int) -> list:
    """Seconds of `reps` calls of jitted `product(a, b)` on n×n arrays of `dtype`, after one warm-up call."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n)).astype(dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n)).astype(dtype)
    f = jax.jit(product)
    jax.block_until_ready(f(a, b))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        ts.append(time.perf_counter() - t)
    return ts


# ----------------------------------------------------------------------------------------------------------------
# The two pipelines.

class Setup:
    def __init__(self, seed=0, render=False, torch_device="cpu"):
        import torch
        import torch_reference as T

        self.torch, self.T = torch, T
        kw = dict(INIT_KWARGS)
        self.kw = kw
        sd_g = T.ada_state_dict(kw, seed=seed)
        sd_c = T.dense_embedder_state_dict(**CLASSIFIER, seed=seed + 1)
        # torch
        self.t_map = T.Mapping(sd_g, kw)
        self.t_clf = T.DenseEmbedder(sd_c)
        self.t_syn = T.Synthesis(sd_g, kw, fused=True) if render else None
        self.dev = torch.device(torch_device)
        self.t_map.to(self.dev)
        self.t_clf.to(self.dev)
        if self.t_syn is not None:
            self.t_syn.to_device(self.dev)
        # JAX, through the project's converters
        cfg, variables = stylegan2_ada.params_from_state_dict(sd_g, kw)
        self.cfg = cfg
        self.variables = jax.tree_util.tree_map(jnp.asarray, variables)
        ccfg, cvars = dense_embedder_params_from_state_dict(sd_c)
        self.g = MappingW.create(cfg, self.variables, c=np.zeros(cfg.c_dim, np.float32))
        self.clf = LatentClassifier.create(ccfg, jax.tree_util.tree_map(jnp.asarray, cvars), g=self.g)
        # the same classifier and mapping through the flax modules, unpacked (the `packing` section's baseline)
        self.clf_flax = self.clf.replace(packed=None, g=MappingW.create(cfg, self.variables, c=np.zeros(
            cfg.c_dim, np.float32), pack=False))
        self.rng = np.random.default_rng(seed + 100)
        self.z_all = None

    def latents(self, b):
        if self.z_all is None or len(self.z_all) < b:
            self.z_all = np.random.default_rng(1234).standard_normal((max(b, 4096), 512)).astype(np.float32)
        return self.z_all[:b], (np.arange(b) % 10).astype(np.int64)

    def energy(self, ys, packed=True, policy="highest"):
        clf = self.clf if packed else self.clf_flax
        if policy != "highest":      # the matmul precision of mapping + classifier (lace_jax.models.precision)
            clf = clf.replace(g=clf.g.with_precision(policy)).with_precision(policy)
        return E.per_sample(lambda y: E.discrete(clf, y), ys)

    @functools.cached_property
    def logits_fn(self):
        return jax.jit(jax.vmap(lambda clf, z: clf(z), in_axes=(None, 0)))

    def accuracy(self, z, ys):
        ok = np.isfinite(z).all(axis=1)
        lg = np.asarray(self.logits_fn(self.clf, jnp.asarray(np.where(ok[:, None], z, 0))))
        return float(np.mean((lg.argmax(axis=1) == ys) & ok))

    # torch ------------------------------------------------------------------------------------------------------
    def torch_solve(self, z0, ys, method="dopri5", rtol=1e-3, atol=1e-3, options=None, render=False):
        torch = self.torch
        vp = self.T.VPODE(self.t_map, self.t_clf, torch.as_tensor(ys, device=self.dev))
        zf, nfe = self.T.sample_q_ode(vp, torch.as_tensor(z0, device=self.dev), t_end=0.0, method=method, rtol=rtol,
                                      atol=atol, options=options)
        out = None
        if render:
            with torch.no_grad():
                ws = self.t_map(zf)[:, None].repeat(1, self.t_syn.num_ws, 1)
                out = self.t_syn(ws).cpu()      # .cpu() waits for the device
        return zf.cpu().numpy(), nfe, out

    # JAX --------------------------------------------------------------------------------------------------------
    def jax_solver(self, kind="ode", render=False, render_dtype="float32", **opts):
        """A jitted `(energy, z0) -> (z_final, nfe, [img])` for the library sampler `kind` ('ode' = ode.sample_ode,
        'tc' = timechange.sample_ode_timechange) with static options."""
        fn = ode.sample_ode if kind == "ode" else timechange.sample_ode_timechange
        cfg = self.cfg.replace(dtype=render_dtype)

        # the generator weights are an ARGUMENT of the compiled function, not constants folded into it: closing
        # over them embedded ~100 MB of constants in the program (slow compiles, duplicated memory)
        def run(energy, z0, variables):
            r = fn(None, energy, z0, **opts)
            out = (r.z, r.nfe)
            if render:
                c = jnp.zeros((z0.shape[0], cfg.c_dim), jnp.float32)
                img = S.generate(cfg, variables, jnp.where(r.success[:, None], r.z, 0.0), c, noise_mode="const")
                out = out + (img,)
            return out

        compiled = jax.jit(run)
        variables = self.variables if render else None
        call = functools.partial(lambda e, z: compiled(e, z, variables))
        call.lower = lambda e, z: compiled.lower(e, z, variables)     # for jax_memory
        return call


# ----------------------------------------------------------------------------------------------------------------
# Measurement helpers.

class RSSPeak:
    """Peak resident-set growth (bytes) while the block runs, sampled from /proc/self/statm every ~1 ms."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.base = self._rss()
        self.peak = self.base
        self.stop = False
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()
        return self

    def _rss(self):
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _loop(self):
        while not self.stop:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __exit__(self, *a):
        self.stop = True
        self.th.join()
        self.peak = max(self.peak, self._rss())
        self.growth = self.peak - self.base


def jax_memory(fn, *args) -> int | None:
    try:
        m = fn.lower(*args).compile().memory_analysis()
        return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def interleaved(calls: dict, reps: int, min_reps: int = 5, settle: int = 0, per_block: int = 1) -> dict:
    """Time every callable in `calls`, round-robin over >= `reps` rounds (a, b, a, b, ...); medians in seconds.

    With `settle` > 0 each turn first makes `settle` untimed calls, then `per_block` timed ones: the steady state of
    back-to-back calls (a sweep). On the 2-vCPU machines the first call after the *other* framework ran is up to 2x
    slower (measured 2026-12-02: a JAX batch-1 solve took 15-17 ms back to back, 27-35 ms after a 90 ms sleep, a
    Python spin or a torch call, single- or multi-threaded XLA alike), which per-call alternation charges to whoever
    runs second; that first call is still timed and reported as `switch_median`."""
    times = {k: [] for k in calls}
    switch = {k: [] for k in calls}
    for _ in range(max(reps, min_reps)):
        for k, f in calls.items():
            for i in range(settle + per_block):
                t = time.perf_counter()
                f()
                dt = time.perf_counter() - t
                if i == 0 and settle:
                    switch[k].append(dt)
                if i >= settle:
                    times[k].append(dt)
    out = {k: dict(median=statistics.median(v), min=min(v), n=len(v)) for k, v in times.items()}
    for k, v in switch.items():
        if v:
            out[k]["switch_median"] = statistics.median(v)
    return out


def first_call(f):
    t = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks.

def pick_torch_threads(setup: Setup, choice: str) -> dict:
    """torch's intra-op thread count: 'auto' times one batch-64 drift with 1 and with all cores and keeps the
    faster (on a shared, oversubscribed machine OpenMP's spinning threads can make 2 threads 10-40x slower than 1)."""
    import torch
    n_all = os.cpu_count() or 1
    if choice != "auto" or setup.dev.type != "cpu":
        choice = str(n_all) if choice == "auto" else choice
        torch.set_num_threads(int(choice))
        return dict(threads=int(choice), how="given")
    z0, ys = setup.latents(64)
    vp = setup.T.VPODE(setup.t_map, setup.t_clf, torch.as_tensor(ys, device=setup.dev))
    tz = torch.as_tensor(z0, device=setup.dev)
    times = {}
    for n in sorted({1, n_all}):
        torch.set_num_threads(n)
        vp(torch.tensor(1.0), (tz,))
        times[n] = interleaved(dict(d=lambda: vp(torch.tensor(1.0), (tz,))), 5)["d"]["median"]
    best = min(times, key=times.get)
    torch.set_num_threads(best)
    log("torch threads", times, "->", best)
    return dict(threads=best, how="auto", drift_b64_s={str(k): v for k, v in times.items()})


def pick_best(search: list, lace_err: float, lace_acc: float) -> dict:
    """The search candidate with the fewest NFE whose final-latent error (vs the 1e-6 reference) is at most LACE's
    (torchdiffeq dopri5 1e-3, reproduced by the compat controller) and whose classifier accuracy is at least LACE's."""
    # adaptive candidates only: fixed steps win on these random weights (Heun, 6 steps in s: 12 NFE at LACE's error)
    # but lost 12 points of judge accuracy on the trained shapes model, where an adaptive Bosh3 kept it
    # (docs/performance.md, "Judge accuracy on a trained model")
    ok = [r for r in search if r["jax_failed"] == 0 and r["jax_err_max"] <= lace_err and r["jax_acc"] >= lace_acc
          and "num_steps" not in r["jax_options"]]
    if not ok:
        return dict(BEST_DEFAULT)
    r = min(ok, key=lambda r: (r["jax_nfe"], r["jax_s"]))
    return dict(r["jax_options"])


def reference(setup: Setup, n: int) -> np.ndarray:
    """Per-sample tight solution for the first n latents: ode.sample_ode dopri5, rtol = atol = 1e-6, independent."""
    z0, ys = setup.latents(n)
    f = setup.jax_solver("ode", solver="dopri5", rtol=1e-6, atol=1e-6, batch_mode="independent", max_steps=100000)
    t = time.perf_counter()
    zr, nfe = f(setup.energy(ys), jnp.asarray(z0))
    zr = np.asarray(zr)
    log(f"reference ({n} latents, dopri5 1e-6 independent): NFE max {int(np.max(nfe))}, "
        f"{time.perf_counter() - t:.1f} s")
    return zr


def compare(setup: Setup, b: int, jax_cfg: dict, torch_cfg: dict, reps: int, zref: np.ndarray, tag: str,
            render=False, memory=True) -> dict:
    """One configuration: torch and JAX on the same b latents, interleaved timing, NFE, accuracy, memory."""
    z0, ys = setup.latents(b)
    energy = setup.energy(ys)
    jz0 = jnp.asarray(z0)
    jcfg = dict(jax_cfg)
    kind = jcfg.pop("kind", "ode")
    render_dtype = jcfg.pop("render_dtype", "float32")
    f = setup.jax_solver(kind, render=render, render_dtype=render_dtype, **jcfg)

    def run_jax():
        return jax.block_until_ready(f(energy, jz0))

    def run_torch():
        return setup.torch_solve(z0, ys, render=render, **torch_cfg)

    jout, jfirst = first_call(run_jax)
    tout, tfirst = first_call(run_torch)
    # calls under a second: steady state of back-to-back calls (see `interleaved`); longer ones amortise the switch
    steady = tfirst < 1.0
    tm = interleaved(dict(torch=run_torch, jax=run_jax), reps, settle=int(steady), per_block=2 if steady else 1)
    zj, nfe_j = np.asarray(jout[0]), np.asarray(jout[1])
    zt, nfe_t = tout[0], tout[1]
    k = min(len(zref), b)
    res = dict(config=tag, batch=b, jax_options=jax_cfg, torch_options=torch_cfg, render=render,
               jax_s=tm["jax"]["median"], torch_s=tm["torch"]["median"], reps=tm["jax"]["n"],
               jax_compile_s=max(jfirst - tm["jax"]["median"], 0.0),
               jax_nfe=int(nfe_j.max()), jax_nfe_mean=float(nfe_j.mean()), torch_nfe=int(nfe_t),
               jax_err_max=float(np.nanmax(np.abs(zj[:k] - zref[:k]))) if k else None,
               torch_err_max=float(np.max(np.abs(zt[:k] - zref[:k]))) if k else None,
               jax_vs_torch_max=float(np.nanmax(np.abs(zj - zt))),
               jax_acc=setup.accuracy(zj, ys), torch_acc=setup.accuracy(zt, ys),
               jax_failed=int((~np.isfinite(zj).all(axis=1)).sum()))
    res["ratio"] = res["torch_s"] / res["jax_s"]
    res["timing"] = "steady (1 untimed + 2 timed calls per turn)" if steady else "alternating (1 call per turn)"
    if steady:
        res["jax_s_switch"] = tm["jax"]["switch_median"]
        res["torch_s_switch"] = tm["torch"]["switch_median"]
        res["ratio_switch"] = res["torch_s_switch"] / res["jax_s_switch"]
    res["jax_samples_per_s"] = b / res["jax_s"]
    res["torch_samples_per_s"] = b / res["torch_s"]
    if render:
        res["img_max_abs_diff"] = float(np.nanmax(np.abs(np.asarray(jout[2]) - tout[2].numpy())))
    if memory:
        res["jax_peak_bytes"] = jax_memory(f, energy, jz0)
        with RSSPeak() as m:
            run_torch()
        res["torch_rss_growth_bytes"] = m.growth
    log(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.items()
                    if k not in ("jax_options", "torch_options")}))
    return res


def jax_only(setup: Setup, b: int, jax_cfg: dict, reps: int, zref: np.ndarray, tag: str) -> dict:
    z0, ys = setup.latents(b)
    energy = setup.energy(ys)
    jz0 = jnp.asarray(z0)
    jcfg = dict(jax_cfg)
    kind = jcfg.pop("kind", "ode")
    f = setup.jax_solver(kind, **jcfg)
    out, tfirst = first_call(lambda: jax.block_until_ready(f(energy, jz0)))
    tm = interleaved(dict(jax=lambda: jax.block_until_ready(f(energy, jz0))), reps)
    z, nfe = np.asarray(out[0]), np.asarray(out[1])
    k = min(len(zref), b)
    res = dict(config=tag, batch=b, jax_options=jax_cfg, jax_s=tm["jax"]["median"],
               jax_compile_s=max(tfirst - tm["jax"]["median"], 0.0), jax_nfe=int(nfe.max()),
               jax_nfe_mean=float(nfe.mean()), jax_err_max=float(np.nanmax(np.abs(z[:k] - zref[:k]))),
               jax_acc=setup.accuracy(z, ys), jax_failed=int((~np.isfinite(z).all(axis=1)).sum()))
    log(json.dumps({k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.items() if k != "jax_options"}))
    return res


def drift_throughput(setup: Setup, b: int, reps: int) -> dict:
    """One drift evaluation (∇E of the batch) alone: grad of the SUM (one batched backward pass) vs vmap of
    per-sample grads, jitted; GFLOP/s from the analytic count."""
    z0, ys = setup.latents(b)
    energy = setup.energy(ys)
    jz0 = jnp.asarray(z0)
    flops = drift_flops_per_sample()["executed_per_eval"] * b
    vm = jax.jit(lambda e, z: E.grad(e, z))
    sm = jax.jit(lambda e, z: jax.grad(lambda z: jnp.sum(E.value(e, z)))(z))
    np.testing.assert_allclose(np.asarray(vm(energy, jz0)), np.asarray(sm(energy, jz0)), rtol=1e-4, atol=1e-5)
    tm = interleaved(dict(vmap_grad=lambda: jax.block_until_ready(vm(energy, jz0)),
                          grad_of_sum=lambda: jax.block_until_ready(sm(energy, jz0))), reps, settle=1, per_block=2)
    import torch
    vp = setup.T.VPODE(setup.t_map, setup.t_clf, torch.as_tensor(ys, device=setup.dev))
    tz = torch.as_tensor(z0, device=setup.dev)
    sync = torch.cuda.synchronize if setup.dev.type == "cuda" else (lambda: None)
    tt = interleaved(dict(torch=lambda: (vp(torch.tensor(1.0), (tz,)), sync())), reps, settle=1, per_block=2)
    out = dict(batch=b, flops=flops)
    for k, v in list(tm.items()) + list(tt.items()):
        out[f"{k}_s"] = v["median"]
        out[f"{k}_gflops"] = flops / v["median"] / 1e9
    log(json.dumps(out))
    return out


def packing(setup: Setup, b: int, reps: int) -> dict:
    """What `lace_jax.models.packed` buys: one drift evaluation and the compat solve with the packed mapping and
    classifier (the library default) against the flax modules on the same weights, interleaved, JAX only."""
    z0, ys = setup.latents(b)
    jz0 = jnp.asarray(z0)
    e_packed, e_flax = setup.energy(ys), setup.energy(ys, packed=False)
    drift = jax.jit(lambda e, z: E.grad(e, z))
    np.testing.assert_allclose(np.asarray(drift(e_packed, jz0)), np.asarray(drift(e_flax, jz0)), rtol=1e-3,
                               atol=1e-6)
    solve = setup.jax_solver("ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint",
                             torchdiffeq_compat=True)
    for e in (e_packed, e_flax):
        jax.block_until_ready(solve(e, jz0))
    td = interleaved(dict(packed=lambda: jax.block_until_ready(drift(e_packed, jz0)),
                          flax=lambda: jax.block_until_ready(drift(e_flax, jz0))), max(reps, 15), settle=1,
                     per_block=2)
    ts = interleaved(dict(packed=lambda: jax.block_until_ready(solve(e_packed, jz0)),
                          flax=lambda: jax.block_until_ready(solve(e_flax, jz0))), reps, settle=1, per_block=2)
    out = dict(batch=b, drift_packed_s=td["packed"]["median"], drift_flax_s=td["flax"]["median"],
               compat_packed_s=ts["packed"]["median"], compat_flax_s=ts["flax"]["median"])
    out["ratio_drift"] = out["drift_flax_s"] / out["drift_packed_s"]
    out["ratio_compat"] = out["compat_flax_s"] / out["compat_packed_s"]
    log(json.dumps(out))
    return out


def nfe_search(setup: Setup, b: int, zref: np.ndarray, reps: int, quick: bool) -> list:
    """Solver / controller / parameterisation choices at batch b: NFE, accuracy vs the 1e-6 reference, classifier
    accuracy, time — to find the default with the fewest NFE at LACE's accuracy."""
    cands = [dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint", torchdiffeq_compat=True),
             dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint"),
             dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="independent"),
             dict(kind="ode", solver="tsit5", rtol=1e-3, atol=1e-3, batch_mode="joint")]
    # fixed steps of the autonomous flow (uniform in s): no controller, so every latent's result is the same at any
    # batch size; cheap on this well-conditioned energy, no safety net on a stiff one (docs/performance.md)
    fixed = [dict(kind="tc", solver=s, num_steps=n, batch_mode="joint")
             for s, n in (("heun", 4), ("heun", 6), ("heun", 8), ("bosh3", 4), ("bosh3", 5), ("bosh3", 6))]
    if quick:
        cands = cands[:2] + [dict(kind="tc", solver=s, rtol=tol, atol=tol, batch_mode="joint")
                             for s, tol in (("dopri5", 1e-2), ("bosh3", 1e-2), ("bosh3", 3e-3))] + fixed[1:2]
    else:
        cands += fixed
        for solver in ("dopri5", "tsit5", "bosh3"):
            for tol in (3e-2, 1e-2, 3e-3, 1e-3):
                for mode in ("joint", "independent"):
                    cands.append(dict(kind="tc", solver=solver, rtol=tol, atol=tol, batch_mode=mode))
        cands.append(dict(kind="ode", solver="euler", num_steps=100, batch_mode="joint"))
        cands.append(dict(kind="tc", solver="euler", num_steps=100, batch_mode="joint"))
    out = []
    for c in cands:
        tag = ",".join(f"{k}={v}" for k, v in c.items())
        out.append(jax_only(setup, b, c, 3, zref, tag))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Matmul precision of the drift (lace_jax.models.precision).

def policy_peaks(n: int, reps: int = 20) -> dict:
    """GFLOP/s (best of `reps`) of a jitted n³ matmul of float32 arrays under each policy of `precision.POLICIES`:
    the ceiling each policy's drift can reach on this device."""
    out = {}
    for policy in MP.POLICIES:
        ts = _matmul_times(functools.partial(MP.matmul, policy=policy), n, jnp.float32, reps)
        out[policy] = dict(n=n, seconds=statistics.median(ts), best_gflops=2 * n ** 3 / min(ts) / 1e9)
    log("matmul peak per policy", {k: round(v["best_gflops"], 1) for k, v in out.items()})
    return out


def precision_rows(setup: Setup, b: int, reps: int, zref: np.ndarray, best: dict, torch_cfg: dict) -> list:
    """Every precision policy × {compat (LACE's dopri5 step for step), best} at batch b against torch + torchdiffeq
    in LACE's setting, all interleaved in one timing loop: time, NFE, max |z − z_ref| on the reference latents
    (z_ref: the float32 1e-6 solve), classifier accuracy (read by the float32 classifier), ratio to torch, and
    one drift evaluation per policy (GFLOP/s). The ODE state and solver stay float32 under every policy."""
    z0, ys = setup.latents(b)
    jz0 = jnp.asarray(z0)
    configs = dict(compat=dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint",
                               torchdiffeq_compat=True), best=dict(best))
    energies = {p: setup.energy(ys, policy=p) for p in MP.POLICIES}
    calls, outs, firsts, failed = {}, {}, {}, {}
    for cname, cfg in configs.items():
        opts = dict(cfg)
        f = setup.jax_solver(opts.pop("kind", "ode"), **opts)
        for p in MP.POLICIES:
            key = f"{p}/{cname}"
            call = functools.partial(lambda f, e: jax.block_until_ready(f(e, jz0)), f, energies[p])
            try:        # a policy the backend refuses is reported, not fatal (one GPU run must give every number)
                outs[key], firsts[key] = first_call(call)
                calls[key] = call
            except Exception as err:  # noqa: BLE001
                failed[key] = f"{type(err).__name__}: {str(err)[:300]}"
                log(f"precision {key} b{b} failed: {failed[key]}")
    energies = {p: e for p, e in energies.items() if any(k.startswith(p + "/") for k in calls)}
    calls["torch"] = lambda: setup.torch_solve(z0, ys, **torch_cfg)
    tout, tfirst = first_call(calls["torch"])
    steady = tfirst < 1.0
    tm = interleaved(calls, reps, settle=int(steady), per_block=2 if steady else 1)
    drift = jax.jit(lambda e, z: E.grad(e, z))
    for e in energies.values():
        jax.block_until_ready(drift(e, jz0))
    td = interleaved({p: functools.partial(lambda e: jax.block_until_ready(drift(e, jz0)), e)
                      for p, e in energies.items()}, max(reps, 15), settle=1, per_block=2)
    flops = drift_flops_per_sample()["executed_per_eval"] * b
    k = min(len(zref), b)
    zt = tout[0]
    torch_err = float(np.max(np.abs(zt[:k] - zref[:k])))
    torch_acc = setup.accuracy(zt, ys)
    rows = []
    for cname in configs:
        z_hi = np.asarray(outs[f"highest/{cname}"][0])
        for p in MP.POLICIES:
            key = f"{p}/{cname}"
            if key in failed:
                rows.append(dict(config=cname, policy=p, batch=b, algorithm=MP.algorithm(p), error=failed[key]))
                continue
            z, nfe = np.asarray(outs[key][0]), np.asarray(outs[key][1])
            r = dict(config=cname, policy=p, batch=b, algorithm=MP.algorithm(p), jax_options=configs[cname],
                     jax_s=tm[key]["median"],
                     jax_compile_s=max(firsts[key] - tm[key]["median"], 0.0), jax_nfe=int(nfe.max()),
                     jax_nfe_mean=float(nfe.mean()), jax_err_max=float(np.nanmax(np.abs(z[:k] - zref[:k]))),
                     jax_acc=setup.accuracy(z, ys), jax_failed=int((~np.isfinite(z).all(axis=1)).sum()),
                     max_diff_vs_highest=float(np.nanmax(np.abs(z - z_hi))),
                     torch_s=tm["torch"]["median"], torch_nfe=int(tout[1]), torch_err_max=torch_err,
                     torch_acc=torch_acc, drift_s=td[p]["median"], drift_gflops=flops / td[p]["median"] / 1e9,
                     timing="steady (1 untimed + 2 timed calls per turn)" if steady else "alternating")
            r["ratio"] = r["torch_s"] / r["jax_s"]
            r["speedup_vs_highest"] = tm[f"highest/{cname}"]["median"] / r["jax_s"]
            r["meets_lace_error"] = bool(r["jax_err_max"] <= PRECISION_ERR_SLACK * torch_err and r["jax_failed"] == 0)
            rows.append(r)
            log(json.dumps({k2: (round(v, 5) if isinstance(v, float) else v) for k2, v in r.items()
                            if k2 != "jax_options"}))
    return rows


# "at LACE's error": at most this factor of torch's final-latent error (the compat controller is LACE's algorithm
# and lands within ±1 % of torch's error by float rounding alone), and at most this much lower classifier accuracy
# (random weights: accuracy is a weak signal here)
PRECISION_ERR_SLACK = 1.02
PRECISION_ACC_SLACK = 0.01


def precision_pick(rows: list) -> dict | None:
    """The fastest (policy, config) whose final-latent error is at LACE's (`meets_lace_error`) and whose classifier
    accuracy is at least LACE's − PRECISION_ACC_SLACK; a policy that runs the same program as `highest` on this
    backend (tf32 without TF32 units) is not a candidate. None if none qualifies."""
    f32 = MP.algorithm("highest")
    ok = [r for r in rows if "error" not in r and r["meets_lace_error"]
          and r["jax_acc"] >= r["torch_acc"] - PRECISION_ACC_SLACK
          and (r["policy"] == "highest" or r["algorithm"] != f32)]
    if not ok:
        return None
    r = max(ok, key=lambda r: r["ratio"])
    return dict(policy=r["policy"], config=r["config"], ratio=round(r["ratio"], 3), jax_s=r["jax_s"],
                err=r["jax_err_max"], lace_err=r["torch_err_max"], acc=r["jax_acc"], lace_acc=r["torch_acc"])


class _AllBut:
    """`--only`: every section name is "skipped" except these."""

    def __init__(self, keep):
        self.keep = set(keep)

    def __contains__(self, name):
        return name not in self.keep
# Compile time: one fresh process per (XLA flag variant, configuration), batches in turn, torch not needed.
#
# A fresh process per configuration because XLA keeps what it learnt in the process (on a GPU, the autotuning
# results of every fusion it has seen): a configuration compiled after another one that shares its network would
# look cheaper than it is for a user who runs it alone. Batches share no shapes, so they can share a process.

COMPILE_CONFIGS = {
    "compat": dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint", torchdiffeq_compat=True),
    "best": None,                                        # the best default (BEST_DEFAULT or --best)
    "diffrax_dopri5_joint": dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode="joint"),
    "diffrax_dopri5_independent": dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3,
                                       batch_mode="independent"),
    "diffrax_tsit5_joint": dict(kind="ode", solver="tsit5", rtol=1e-3, atol=1e-3, batch_mode="joint"),
    "euler_step0.01": dict(kind="ode", solver="euler", step_size=0.01, batch_mode="joint"),
    "tc_heun_6": dict(kind="tc", solver="heun", num_steps=6, batch_mode="joint"),
    "end_to_end_best_float32": "render",                 # the best default + 32-px synthesis of the end points
}
_GEMM = re.compile(r"__cublas\$gemm|__cublas\$lt\$matmul|__triton_gemm|\bdot\(|\bconvolution\(")


class JaxSetup:
    """`Setup`'s JAX half without torch: the same architecture and shapes with random numpy weights (no flax
    initialiser: its per-parameter compiles took longer than the compiles measured), what the compile section
    needs. Compile time does not depend on the weights' values."""

    jax_solver = Setup.jax_solver
    latents = Setup.latents
    energy = Setup.energy

    def __init__(self, seed=0):
        from lace_jax.models.classifiers import dense_embedder_dims
        from ports.stylegan2_ada import config_from_init_kwargs

        rng = np.random.default_rng(seed)
        normal = lambda shape: (0.1 * rng.standard_normal(shape)).astype(np.float32)
        self.cfg = config_from_init_kwargs(INIT_KWARGS)
        self.variables = jax.tree_util.tree_map(lambda sd: jnp.asarray(normal(sd.shape)),
                                                S.variable_shapes(self.cfg))
        dims = dense_embedder_dims(CLASSIFIER["input_dim"], CLASSIFIER["up_dim"], CLASSIFIER["depth"])
        sizes = list(zip(dims, dims[1:])) + [(dims[-1], CLASSIFIER["num_classes"])]
        names = [f"net_{l}" for l in range(len(dims) - 1)] + ["linear"]
        cvars = {"params": {n: dict(kernel=normal((a, b)), bias=normal((b,))) for n, (a, b) in zip(names, sizes)}}
        self.g = MappingW.create(self.cfg, self.variables, c=np.zeros(self.cfg.c_dim, np.float32))
        self.clf = LatentClassifier.create(dict(dims=dims, num_classes=CLASSIFIER["num_classes"]), cvars, g=self.g)
        self.z_all = None


def compile_child(name: str, options: dict, batches: list, reps: int = 1) -> dict:
    """In this (fresh) process: for each batch, a new jit of the configuration, timed as trace + lowering
    (`lower_s`) and XLA compilation (`compile_s`, where a GPU autotunes); nothing is run. The persistent
    compilation cache is off, so every compile is a real one. With `reps` > 1 the batches are compiled again in
    turn (1, 64, …, 1, 64, …): `compile_s` stays the first compile (what a user pays); `compile_median_s` is the
    median over the rounds, for a loaded CPU (on a GPU the later rounds reuse the process's autotuning)."""
    jax.config.update("jax_enable_compilation_cache", False)
    t = time.perf_counter()
    w = jax.jit(lambda a: jax.grad(lambda a: jnp.sum(jnp.tanh(a @ a)))(a)).lower(jnp.ones((64, 64))).compile()
    del w
    warmup = time.perf_counter() - t
    setup = JaxSetup()
    rows = {b: None for b in batches}
    for r in range(max(1, int(reps))):
        for b in batches:
            z0, ys = setup.latents(b)
            jcfg = dict(options)
            kind = jcfg.pop("kind", "ode")
            render = jcfg.pop("render", False)
            policy = jcfg.pop("precision", "highest")       # the drift's matmul policy (--compile-precision)
            f = setup.jax_solver(kind, render=render, **jcfg)
            energy, jz0 = setup.energy(ys, policy=policy), jnp.asarray(z0)
            t = time.perf_counter()
            low = f.lower(energy, jz0)
            t_low = time.perf_counter() - t
            t = time.perf_counter()
            comp = low.compile()
            t_comp = time.perf_counter() - t
            log(f"compile {name} b={b} round {r}: lower {t_low:.2f} s, compile {t_comp:.2f} s")
            if rows[b] is not None:
                rows[b]["compile_rounds_s"].append(t_comp)
                rows[b]["compile_median_s"] = statistics.median(rows[b]["compile_rounds_s"])
                continue
            text = comp.as_text() or ""
            row = dict(batch=b, lower_s=t_low, compile_s=t_comp, total_s=t_low + t_comp, compile_rounds_s=[t_comp],
                       compile_median_s=t_comp, gemms_and_convs=len(_GEMM.findall(text)), hlo_chars=len(text))
            try:
                row["temp_bytes"] = int(comp.memory_analysis().temp_size_in_bytes)
            except Exception:  # noqa: BLE001 - not every backend reports it
                row["temp_bytes"] = None
            rows[b] = row
    return dict(config=name, options=options, warmup_compile_s=warmup, rows=list(rows.values()),
                device=device_info())


def compile_section(batches: list, best: dict, variants: list, variant_configs: list, configs: list | None = None,
                    timeout: int = 900, devices: list | None = None, reps: int = 1, emit=None,
                    precision: str = "highest") -> list:
    """Compile time of every configuration at every batch, each configuration in a fresh process (see above),
    for the XLA flags this process was started with ('default') and for each `NAME=FLAGS` variant (added to
    XLA_FLAGS; run for `variant_configs` only). One row per (variant, configuration, batch); `emit(rows)` after
    each process; a process past `timeout` s leaves an error row. `precision`: the matmul policy of the drift's
    mapping + classifier in every job (`lace_jax.models.precision`; the library's GPU default is tf32)."""
    import subprocess

    opts = {k: (dict(best) if v is None else dict(best, render=True) if v == "render" else dict(v))
            for k, v in COMPILE_CONFIGS.items()}
    opts = {k: dict(v, precision=precision) for k, v in opts.items()}
    names = configs or list(opts)
    base_flags = os.environ.get("XLA_FLAGS", "")
    jobs = [("default", base_flags, n) for n in names]
    for spec in variants:
        vname, _, vflags = spec.partition("=")
        jobs += [(vname, (base_flags + " " + vflags).strip(), n) for n in variant_configs if n in opts]
    rows = []
    for vname, flags, name in jobs:
        env = dict(os.environ, XLA_FLAGS=flags)
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")    # compiles only; the parent may hold memory
        cmd = [sys.executable, str(Path(__file__).resolve()), "--compile-child",
               json.dumps(dict(name=name, options=opts[name])), "--batches", *map(str, batches),
               "--compile-reps", str(reps)]
        t = time.perf_counter()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            rows.append(dict(variant=vname, xla_flags=flags, config=name, error=f"timeout after {timeout} s"))
            if emit:
                emit(rows)
            continue
        if p.returncode != 0:
            rows.append(dict(variant=vname, xla_flags=flags, config=name, error=p.stderr[-2000:]))
            log(f"compile {vname}/{name} failed: {p.stderr[-500:]}")
            if emit:
                emit(rows)
            continue
        child = json.loads(p.stdout.strip().splitlines()[-1])
        if devices is not None:
            devices.append(child["device"])
        for r in child["rows"]:
            rows.append(dict(variant=vname, xla_flags=flags, config=name, options=opts[name],
                             process_s=time.perf_counter() - t, warmup_compile_s=child["warmup_compile_s"], **r))
        log(f"compile {vname}/{name}: " + ", ".join(f"b{r['batch']} {r['compile_s']:.2f} s" for r in child["rows"]))
        if emit:
            emit(rows)
    return rows


def compile_summary(rows: list) -> dict:
    """Per (variant, configuration): the slowest first compile over the batches and its growth from the smallest
    batch to the largest (`compile_max_s_*`, `compile_growth_*`; targets in benchmarks/README.md), and the same
    growth of the medians over rounds (`compile_growth_median_*`, with --compile-reps > 1)."""
    out = {}
    groups: dict = {}
    for r in rows:
        if "compile_s" in r:
            groups.setdefault((r["variant"], r["config"]), []).append(r)
    for (v, c), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        tag = c if v == "default" else f"{v}_{c}"
        out[f"compile_max_s_{tag}"] = round(max(r["compile_s"] for r in rs), 3)
        if len(rs) > 1:
            out[f"compile_growth_{tag}"] = round(rs[-1]["compile_s"] / max(rs[0]["compile_s"], 1e-9), 3)
            if len(rs[0].get("compile_rounds_s", [])) > 1:
                out[f"compile_growth_median_{tag}"] = round(rs[-1]["compile_median_s"] /
                                                            max(rs[0]["compile_median_s"], 1e-9), 3)
    return out


def compile_markdown(rows: list) -> list:
    if not rows:
        return []
    L = ["\n### compile\n", "| variant | config | batch | lower s | compile s | median s | gemms+convs | temp MB |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "compile_s" not in r:
            L.append(f"| {r['variant']} | {r['config']} | – | – | failed | – | – | – |")
            continue
        mb = "–" if r.get("temp_bytes") is None else f"{r['temp_bytes'] / 2 ** 20:.1f}"
        L.append(f"| {r['variant']} | {r['config']} | {r['batch']} | {r['lower_s']:.2f} | {r['compile_s']:.2f} | "
                 f"{r.get('compile_median_s', r['compile_s']):.2f} | {r['gemms_and_convs']} | {mb} |")
    return L


def add_compile_args(ap) -> None:
    ap.add_argument("--compile-only", action="store_true",
                    help="only the compile section (no torch needed): compile s per configuration and batch")
    ap.add_argument("--compile-configs", type=str, nargs="*", default=None,
                    help=f"compile section: configurations (default all: {' '.join(COMPILE_CONFIGS)})")
    ap.add_argument("--compile-variant", type=str, action="append", default=[],
                    help="compile section: NAME=XLA_FLAGS, a variant run with these flags added (repeatable), "
                         "e.g. autotune0=--xla_gpu_autotune_level=0")
    ap.add_argument("--compile-variant-configs", type=str, nargs="*", default=["compat"],
                    help="configurations the variants run (default: compat)")
    ap.add_argument("--compile-precision", type=str, default="highest", choices=list(MP.POLICIES),
                    help="compile section: the drift's matmul policy (highest: LACE's float32; tf32: the GPU default)")
    ap.add_argument("--compile-reps", type=int, default=1,
                    help="rounds over the batches in each process (> 1 for a loaded CPU: medians)")
    ap.add_argument("--compile-timeout", type=int, default=900, help="seconds per configuration process")
    ap.add_argument("--compile-child", type=str, default=None, help=argparse.SUPPRESS)


def compile_main(args) -> dict:
    """`--compile-only` (the section alone, one JSON document) and the per-configuration child processes."""
    batches = args.batches or [1, 64, 512, 4096]
    if args.compile_child:
        spec = json.loads(args.compile_child)
        print(json.dumps(compile_child(spec["name"], spec["options"], batches, args.compile_reps), default=float))
        return {}
    import diffrax
    import jaxlib

    t_start = time.time()
    best = json.loads(args.best) if args.best else dict(BEST_DEFAULT)
    unknown = set(args.compile_configs or []) - set(COMPILE_CONFIGS)
    if unknown:
        raise SystemExit(f"unknown --compile-configs {sorted(unknown)}; expected some of {list(COMPILE_CONFIGS)}")
    devices: list = []          # the parent never starts a backend: each child reports its device

    def emit(rows):
        doc = dict(benchmark="sampling", section="compile", complete=False,
                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   device=devices[0] if devices else None, versions=dict(
                       python=platform.python_version(), jax=jax.__version__, jaxlib=jaxlib.__version__,
                       diffrax=diffrax.__version__),
                   xla_flags=os.environ.get("XLA_FLAGS", ""), setup=dict(
                       generator=INIT_KWARGS, classifier=CLASSIFIER, best_default=best, batches=batches,
                       reps=args.compile_reps, precision=args.compile_precision, load_avg_at_start=load0,
                       load_avg_now=_loadavg()),
                   **compile_summary(rows), results=dict(compile=rows), wall_s=time.time() - t_start)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
        if args.markdown:
            Path(args.markdown).write_text("\n".join(compile_markdown(rows)) + "\n")
        return doc

    load0 = _loadavg()
    rows = compile_section(batches, best, args.compile_variant, args.compile_variant_configs,
                           args.compile_configs, timeout=args.compile_timeout, devices=devices,
                           reps=args.compile_reps, emit=emit, precision=args.compile_precision)
    doc = emit(rows)
    doc["complete"] = True
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(json.dumps(doc, indent=1, default=float))
    return doc


def _loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a subset in < 5 minutes on 2 CPU cores")
    ap.add_argument("--batches", type=int, nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", type=str, default=None, help="also write the JSON here")
    ap.add_argument("--markdown", type=str, default=None, help="write the Markdown report (docs/performance.md)")
    ap.add_argument("--best", type=str, default=None,
                    help="JSON dict of options for 'our best default' (default: the built-in choice)")
    ap.add_argument("--jax-single-thread", action="store_true",
                    help="XLA CPU with one intra-op thread (faster on an oversubscribed machine, see README)")
    ap.add_argument("--torch-device", type=str, default="cpu", help="torch device (cuda on a GPU machine)")
    ap.add_argument("--torch-threads", type=str, default="auto", help="'auto' (faster of 1 and all cores) or N")
    ap.add_argument("--skip", type=str, nargs="*", default=[],
                    help="sections to skip: compat best joint_vs_independent euler render search drift packing "
                         "bf16 precision compile")
    ap.add_argument("--only", type=str, nargs="*", default=None,
                    help="run only these sections (e.g. --only precision); overrides --skip")
    ap.add_argument("--precision-batches", type=int, nargs="*", default=None,
                    help="batch sizes of the precision section (default: 8 64 with --quick, else 512 4096)")
    add_compile_args(ap)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)    # compile times must be real compiles
    if args.compile_child or args.compile_only:
        return compile_main(args)
    if args.only is not None:
        args.skip = _AllBut(args.only)
    import torch

    quick = args.quick
    batches = args.batches or ([1, 8, 64] if quick else [1, 8, 64, 512, 4096])
    reps = args.reps or 5
    t_start = time.time()
    setup = Setup(render=True, torch_device=args.torch_device)
    threads = pick_torch_threads(setup, args.torch_threads)
    flops = drift_flops_per_sample()
    peak = matmul_peak(1024 if quick else 2048)
    log("matmul peak", peak)
    n_ref = 8 if quick else 64
    zref = reference(setup, n_ref)
    results = dict(compat=[], best=[], joint_vs_independent=[], euler=[], render=[], search=[], drift=[],
                   packing=[], precision=[], compile=[])
    lace_torch = dict(method="dopri5", rtol=1e-3, atol=1e-3)
    state = dict(best=None, bf16=None, search_pick=None, policy_peaks=None)

    def emit(final=False):
        summary = summarise(results, flops, peak, state["bf16"])
        doc = dict(benchmark="sampling", quick=quick, complete=final,
                   date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   device=device_info(), versions=versions(torch), torch_threads=threads,
                   xla_flags=os.environ.get("XLA_FLAGS", ""), setup=dict(
                       generator=INIT_KWARGS, classifier=CLASSIFIER, ode=dict(LACE, t_start=1.0),
                       c="zeros [B, 10] (as LACE's CIFAR-10 sampling)", mapping="8 layers, lr multiplier 0.01",
                       latents="N(0, I), seed 1234; targets y = i mod 10", reference_latents=n_ref,
                       best_default=state["best"], search_pick=state["search_pick"]),
                   flops=flops, matmul_peak=peak, matmul_peak_bf16=state["bf16"],
                   matmul_peak_per_policy=state["policy_peaks"], torch_matmul=torch_matmul_settings(torch),
                   **summary, results=results,
                   wall_s=time.time() - t_start)
        if args.out:
            Path(args.out).write_text(json.dumps(doc, indent=1, default=float) + "\n")
        if args.markdown:
            Path(args.markdown).write_text(markdown(doc))
        return doc

    # 1. Which solver/controller reaches LACE's accuracy with the fewest NFE (batch = reference latents).
    if "search" not in args.skip:
        results["search"] = nfe_search(setup, n_ref, zref, reps, quick)
        lace = results["search"][0]          # the compat controller = torchdiffeq's dopri5 1e-3 (LACE's setting)
        state["search_pick"] = pick_best(results["search"][1:], lace["jax_err_max"], lace["jax_acc"])
        # --quick searches on 8 latents, too few to choose a default (its pick, Bosh3 1e-2, was 37 % worse in max
        # error on 64 and 34 % worse than LACE at batch 512): it is reported, and `best` keeps the full sweep's pick
        state["best"] = (json.loads(args.best) if args.best else
                         dict(BEST_DEFAULT) if quick else state["search_pick"])
    else:
        state["best"] = json.loads(args.best) if args.best else dict(BEST_DEFAULT)
    log("best default:", state["best"])
    best = state["best"]
    emit()
    if "compat" not in args.skip:
        for b in batches:
            results["compat"].append(compare(setup, b, dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3,
                                                            batch_mode="joint", torchdiffeq_compat=True),
                                             lace_torch, reps, zref, "compat", memory=b <= 512))
            emit()
    if "best" not in args.skip:
        for b in batches:
            results["best"].append(compare(setup, b, best, lace_torch, reps, zref, "best", memory=b <= 512))
            emit()
    if "drift" not in args.skip:
        again = matmul_peak(1024 if quick else 2048)      # next to the drift it is compared with; keep the better
        log("matmul peak again", again)
        if again["best_gflops"] > peak["best_gflops"]:
            peak.update(again)
        for b in ([64, 512] if quick else [1, 64, 512, 4096]):
            results["drift"].append(drift_throughput(setup, b, max(reps, 15)))   # ms-scale calls: more samples
        emit()
    if "packing" not in args.skip:
        for b in ([1, 8, 64] if quick else [1, 8, 64, 512]):
            results["packing"].append(packing(setup, b, reps))
        emit()
    if "precision" not in args.skip:
        state["policy_peaks"] = policy_peaks(1024 if quick else 2048)
        for b in args.precision_batches or ([8, 64] if quick else [512, 4096]):
            results["precision"] += precision_rows(setup, b, reps, zref, best, lace_torch)
            emit()
    if "euler" not in args.skip:
        for b in ([8] if quick else [1, 64, 512]):
            results["euler"].append(compare(setup, b, dict(kind="ode", solver="euler", step_size=0.01,
                                                           batch_mode="joint"),
                                            dict(method="euler", options=dict(step_size=0.01)), reps, zref,
                                            "euler_step0.01", memory=False))
        emit()
    if "joint_vs_independent" not in args.skip:
        for b in ([8, 64] if quick else [8, 64, 512]):
            for mode in ("joint", "independent"):
                results["joint_vs_independent"].append(jax_only(
                    setup, b, dict(kind="ode", solver="dopri5", rtol=1e-3, atol=1e-3, batch_mode=mode), reps, zref,
                    f"diffrax_dopri5_{mode}"))
        emit()
    if "bf16" not in args.skip:
        state["bf16"] = matmul_peak(1024 if quick else 2048, jnp.bfloat16)
    if "render" not in args.skip:
        for b in ([8] if quick else [1, 8, 64]):
            for rd in (("float32",) if quick else ("float32", "bfloat16")):
                results["render"].append(compare(
                    setup, b, dict(best, render_dtype=rd), lace_torch, max(3, reps - 2) if b >= 64 else reps, zref,
                    f"end_to_end_{rd}", render=True, memory=False))
                emit()
    if "compile" not in args.skip and not quick:
        results["compile"] = compile_section(batches, best, args.compile_variant, args.compile_variant_configs,
                                             args.compile_configs, timeout=args.compile_timeout,
                                             reps=args.compile_reps, precision=args.compile_precision)
    doc = emit(final=True)
    print(json.dumps(doc, indent=1, default=float))


# Fallback "best default" when the search is skipped (the search's pick in our CPU runs; docs/performance.md).
BEST_DEFAULT = dict(kind="tc", solver="bosh3", rtol=3e-3, atol=3e-3, batch_mode="joint")


def summarise(results, flops, peak, bf16) -> dict:
    out = {}
    for sec in ("compat", "best", "euler", "render"):
        for r in results[sec]:
            extra = "" if sec != "render" else "_" + r["config"].split("_")[-1]
            out[f"ratio_{sec}{extra}_b{r['batch']}"] = round(r["ratio"], 3)
            if "ratio_switch" in r:
                out[f"ratio_switch_{sec}{extra}_b{r['batch']}"] = round(r["ratio_switch"], 3)
    for r in results["drift"]:
        out[f"drift_peak_fraction_b{r['batch']}"] = round(r["grad_of_sum_gflops"] / peak["best_gflops"], 3)
        out[f"ratio_drift_vmap_over_sum_b{r['batch']}"] = round(r["vmap_grad_s"] / r["grad_of_sum_s"], 3)
    for sec in ("compat", "best"):
        for r in results[sec]:
            achieved = flops["executed_per_eval"] * r["batch"] * r["jax_nfe"] / r["jax_s"] / 1e9
            out[f"solve_peak_fraction_{sec}_b{r['batch']}"] = round(achieved / peak["best_gflops"], 4)
    if results["compat"] and results["best"]:
        for rc, rb in zip(results["compat"], results["best"]):
            out[f"nfe_saved_best_vs_lace_b{rc['batch']}"] = round(rc["torch_nfe"] / max(rb["jax_nfe"], 1), 3)
    for r in results["packing"]:
        out[f"ratio_packing_drift_b{r['batch']}"] = round(r["ratio_drift"], 3)
        out[f"ratio_packing_compat_b{r['batch']}"] = round(r["ratio_compat"], 3)
    out.update(compile_summary(results.get("compile", [])))
    if bf16:
        out["ratio_matmul_bf16_over_f32"] = round(bf16["best_gflops"] / peak["best_gflops"], 3)
    for r in results.get("precision", []):
        if "ratio" in r:
            out[f"ratio_precision_{r['policy']}_{r['config']}_b{r['batch']}"] = round(r["ratio"], 3)
    for b in sorted({r["batch"] for r in results.get("precision", [])}):
        out[f"precision_pick_b{b}"] = precision_pick([r for r in results["precision"] if r["batch"] == b])
    return out


def torch_matmul_settings(torch) -> dict:
    """Whether torch's float32 matmuls may use TF32 (its default on CUDA: no): what the torch side computes in."""
    out = {}
    try:
        out["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        out["cuda_matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    except Exception:  # noqa: BLE001 - informational only
        pass
    return out


def device_info() -> dict:
    dev = jax.devices()[0]
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(backend=jax.default_backend(), device=str(dev.device_kind), cpu=cpu, cores=os.cpu_count(),
                platform=platform.platform())


def versions(torch) -> dict:
    import diffrax
    import flax
    import torchdiffeq
    return dict(python=platform.python_version(), jax=jax.__version__, diffrax=diffrax.__version__,
                flax=flax.__version__, numpy=np.__version__, torch=torch.__version__,
                torchdiffeq=getattr(torchdiffeq, "__version__", "?"), torch_threads=torch.get_num_threads())


def markdown(doc) -> str:
    L = []
    f = lambda x, n=3: "–" if x is None else (f"{x:.{n}g}" if isinstance(x, float) else str(x))
    L.append(f"Run: {doc['date']}, {doc['device']['backend']} ({doc['device']['cpu']}, {doc['device']['cores']} "
             f"cores), " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()) + ".\n")
    L.append(f"Matmul peak (jitted {doc['matmul_peak']['n']}³ f32, best of 20): "
             f"{doc['matmul_peak']['best_gflops']:.1f} GFLOP/s. "
             f"Drift FLOPs per sample and evaluation: {doc['flops']['per_eval'] / 1e6:.2f} MFLOP "
             f"(forward {doc['flops']['forward'] / 1e6:.2f} + input gradient {doc['flops']['input_grad'] / 1e6:.2f}).\n")
    head = ("| config | batch | torch s | JAX s | torch/JAX | torch/JAX first call after a switch | NFE torch | "
            "NFE JAX | err torch | err JAX | acc torch | acc JAX | JAX samples/s | JAX compile s | JAX peak MB | "
            "torch RSS+ MB |")
    for sec in ("compat", "best", "euler", "render"):
        rows = doc["results"][sec]
        if not rows:
            continue
        L.append(f"\n### {sec}\n")
        L.append(head)
        L.append("|" + "---|" * head.count("|")[:-1] if False else "|" + "---|" * (head.count("|") - 1))
        for r in rows:
            mb = lambda v: "–" if v is None else f"{v / 2 ** 20:.1f}"
            L.append(f"| {r['config']} | {r['batch']} | {f(r['torch_s'])} | {f(r['jax_s'])} | {r['ratio']:.2f} | "
                     f"{f(r.get('ratio_switch'))} | {r['torch_nfe']} | {r['jax_nfe']} | {f(r['torch_err_max'])} | "
                     f"{f(r['jax_err_max'])} | "
                     f"{r['torch_acc']:.3f} | {r['jax_acc']:.3f} | {r['jax_samples_per_s']:.1f} | "
                     f"{f(r['jax_compile_s'])} | {mb(r.get('jax_peak_bytes'))} | "
                     f"{mb(r.get('torch_rss_growth_bytes'))} |")
    for sec in ("joint_vs_independent", "search"):
        rows = doc["results"][sec]
        if not rows:
            continue
        L.append(f"\n### {sec}\n")
        L.append("| config | batch | JAX s | NFE (max) | NFE (mean) | err vs 1e-6 ref | classifier acc |")
        L.append("|---|---|---|---|---|---|---|")
        for r in rows:
            L.append(f"| {r['config']} | {r['batch']} | {f(r['jax_s'])} | {r['jax_nfe']} | {r['jax_nfe_mean']:.1f} | "
                     f"{f(r['jax_err_max'])} | {r['jax_acc']:.3f} |")
    if doc["results"]["drift"]:
        L.append("\n### drift alone\n")
        L.append("| batch | grad of sum s | vmap grad s | torch s | grad-of-sum GFLOP/s | torch GFLOP/s |")
        L.append("|---|---|---|---|---|---|")
        for r in doc["results"]["drift"]:
            L.append(f"| {r['batch']} | {f(r['grad_of_sum_s'])} | {f(r['vmap_grad_s'])} | {f(r['torch_s'])} | "
                     f"{r['grad_of_sum_gflops']:.1f} | {r['torch_gflops']:.1f} |")
    if doc["results"].get("precision"):
        L.append("\n### precision (matmul policy of mapping + classifier; ODE state and solver float32)\n")
        L.append("| policy | config | batch | JAX s | torch s | torch/JAX | vs highest | NFE | err JAX | err LACE | "
                 "acc JAX | acc LACE | max diff vs highest | drift GFLOP/s | meets LACE err |")
        L.append("|" + "---|" * 15)
        for r in doc["results"]["precision"]:
            if "error" in r:
                L.append(f"| {r['policy']} | {r['config']} | {r['batch']} | failed: {r['error'][:80]} |")
                continue
            L.append(f"| {r['policy']} ({r['algorithm']}) | {r['config']} | {r['batch']} | {f(r['jax_s'])} | "
                     f"{f(r['torch_s'])} | "
                     f"{r['ratio']:.2f} | {r['speedup_vs_highest']:.2f} | {r['jax_nfe']} | {f(r['jax_err_max'])} | "
                     f"{f(r['torch_err_max'])} | {r['jax_acc']:.3f} | {r['torch_acc']:.3f} | "
                     f"{f(r['max_diff_vs_highest'])} | {r['drift_gflops']:.1f} | {r['meets_lace_error']} |")
        if doc.get("matmul_peak_per_policy"):
            L.append("\nMatmul peak per policy (GFLOP/s): " + ", ".join(
                f"{k} {v['best_gflops']:.1f}" for k, v in doc["matmul_peak_per_policy"].items()) + ".\n")
    L.extend(compile_markdown(doc["results"].get("compile", [])))
    L.append("\n### ratios\n")
    L.append("```json\n" + json.dumps({k: v for k, v in doc.items() if k.startswith(("ratio_", "drift_", "solve_",
                                                                                      "nfe_", "precision_pick"))},
                                      indent=1) + "\n```\n")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
