"""One entry point over the sampler family, for the CLIs and sweeps: name + options → samples, success, stats.

The ODE and SDE samplers take the *conditional* energy (LACE's ODE: the prior's contribution cancels);
Langevin and MCMC samplers take the full energy, prior included (`E = ½‖z‖² + E_cond`). This module adds the
prior where needed, so callers always pass the conditional energy.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lace_jax import energy as en
from lace_jax.samplers import _solvers, langevin, mcmc, ode, sde, timechange

# `ode_tc`'s settings where the caller sets none: the same PF-ODE as `ode`, solved as the autonomous gradient flow
# dz/ds = −∇E_cond(z) (samplers/timechange.py) with adaptive Bosh3 at 3e-3 (measured against LACE's settings in
# docs/performance.md).
TC_DEFAULTS = {"solver": "bosh3", "rtol": 3e-3, "atol": 3e-3}


@dataclasses.dataclass(frozen=True)
class SamplerOptions:
    """Every sampler's knobs, with LACE's defaults where LACE has one."""
    # ODE (LACE: dopri5, rtol = atol = 1e-3, t from 1 to t_end)
    solver: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    num_steps: int | None = None       # fixed-step solvers (euler, heun); or the number of Langevin/MCMC steps
    t_end: float = 0.0
    batch_mode: str = "independent"    # or "joint" (one step size for the batch, as torchdiffeq)
    max_steps: int = 4096
    torchdiffeq_compat: bool = False
    # Langevin / MCMC (LACE SGLD: η = 0.01, s = 0.01, 100 steps)
    step_size: float = 0.01
    noise_scale: float = 0.01
    num_leapfrog: int = 3
    damping: float = 0.5
    # VP-SDE predictor–corrector
    snr: float = 0.16
    corrector_steps: int = 1

    def langevin_steps(self) -> int:
        return 100 if self.num_steps is None else int(self.num_steps)


class SampleOutput(NamedTuple):
    z: jax.Array          # [B, D]; rows whose solve failed are NaN (never pass them on as samples)
    success: jax.Array    # [B] bool
    stats: dict           # per-sampler statistics (arrays; `nfe` always), JSON-able with records.to_jsonable
    z_unchecked: Any = None  # [B, D] the end state before failed rows were masked (for diagnostics)

    @property
    def nfe(self) -> jax.Array:
        """Energy-gradient (drift) evaluations: per sample [B] for the ODEs, a scalar for fixed-step samplers."""
        return self.stats["nfe"]


def _ode(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
    _solvers.get(options.solver, _solvers.ODE_SOLVERS)
    num_steps = options.num_steps
    if not _solvers.SOLVERS[options.solver].adaptive and num_steps is None:
        num_steps = 100   # LACE's Euler: step 0.01 over [0, 1]
    res = ode.sample_ode(key, cond_energy, z0, solver=options.solver, rtol=options.rtol, atol=options.atol,
                         num_steps=num_steps, t_end=options.t_end, batch_mode=options.batch_mode,
                         max_steps=options.max_steps, torchdiffeq_compat=options.torchdiffeq_compat)
    return _from_ode(res)


def _ode_tc(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
    """LACE's PF-ODE from t = 1 to `options.t_end` through the time change s(t) (an autonomous flow): same end
    point as `ode` up to the solver's tolerance, usually far fewer evaluations."""
    _solvers.get(options.solver, _solvers.TC_SOLVERS, what="solver")
    if options.torchdiffeq_compat:
        raise ValueError("torchdiffeq_compat is a setting of the 'ode' sampler, not of 'ode_tc'")
    fixed = not _solvers.SOLVERS[options.solver].adaptive
    if fixed and options.num_steps is None:
        raise ValueError(f"ode_tc with the fixed-step solver {options.solver!r} needs num_steps")
    res = timechange.sample_ode_timechange(key, cond_energy, z0, t_end=options.t_end, solver=options.solver,
                                           rtol=options.rtol, atol=options.atol, batch_mode=options.batch_mode,
                                           num_steps=options.num_steps if fixed else None,
                                           max_steps=options.max_steps)
    return _from_ode(res)


def _from_ode(res: ode.ODEResult) -> SampleOutput:
    stats = {k: v for k, v in res._asdict().items() if k not in ("z", "success", "z_unchecked", "t_evals")}
    z = jnp.where(res.success[:, None], res.z, jnp.nan)
    return SampleOutput(z, res.success, stats, res.z_unchecked)


def _sde(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
    res = sde.sample_vpsde_pc(key, cond_energy, z0, num_steps=options.num_steps or 100, snr=options.snr,
                              corrector_steps=options.corrector_steps, t_end=options.t_end or 1e-3)
    return _finish(res.z, {"nfe": res.nfe})


def _sgld(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
    res = langevin.sample_sgld(key, en.with_prior(cond_energy), z0, num_steps=options.langevin_steps(),
                               step_size=options.step_size, noise_scale=options.noise_scale)
    return _finish(res.z, {"nfe": res.nfe})


def _ula(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
    res = langevin.sample_ula(key, en.with_prior(cond_energy), z0, num_steps=options.langevin_steps(),
                              step_size=options.step_size)
    return _finish(res.z, {"nfe": res.nfe})


def _mcmc(method: str):
    def run_mcmc(key, cond_energy, z0, options: SamplerOptions) -> SampleOutput:
        res = mcmc.mcmc_level(key, en.with_prior(cond_energy), z0, method=method,
                              num_steps=options.langevin_steps(), step_size=options.step_size,
                              num_leapfrog=options.num_leapfrog, damping=options.damping)
        return _finish(res.z, {"nfe": res.nfe, "acceptance_rate": res.acceptance_rate})
    return run_mcmc


# name → implementation `(key, cond_energy, z0, options) -> SampleOutput`; the names the CLIs accept.
SAMPLERS = {"ode": _ode, "ode_tc": _ode_tc, "sgld": _sgld, "ula": _ula, "mala": _mcmc("mala"),
            "hmc": _mcmc("hmc"), "uhmc": _mcmc("uhmc"), "sde": _sde}
NAMES = tuple(SAMPLERS)
LANGEVIN = ("sgld", "ula", "mala", "hmc", "uhmc")   # samplers that take LACE's SGLD settings


def run(key: jax.Array, sampler: str, cond_energy: Any, z0: jax.Array, options: SamplerOptions) -> SampleOutput:
    """Sample from `exp(−½‖z‖² − cond_energy(z))` starting at `z0[B, D]` with the named sampler. Callers always
    pass the *conditional* energy: the PF-ODE and the VP-SDE take it as it is (LACE's ODE: the prior's
    contribution cancels), Langevin and MCMC samplers get the prior added here."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {', '.join(NAMES)}")
    return SAMPLERS[sampler](key, cond_energy, z0, options)


def _finish(z: jax.Array, stats: dict) -> SampleOutput:
    success = jnp.all(jnp.isfinite(z), axis=-1)
    return SampleOutput(jnp.where(success[:, None], z, jnp.nan), success, stats, z)


# --------------------------------------------------------------------------------------------------------------
# Chunk bodies for lace_jax.runs.chunks.generate

# (params, key[2] uint32, index int32 scalar) -> (z[D], success bool scalar, stats {name: scalar})
PerSampleFn = Callable[[Any, jax.Array, jax.Array], tuple]


def sampler_fn(sampler: str, options: Any, latent_dim: int, *,
               energy_for_index: Optional[Callable[[Any, jax.Array], Any]] = None,
               init_for_index: Optional[Callable[[Any, jax.Array], jax.Array]] = None) -> PerSampleFn:
    """A `PerSampleFn` around `run`: from the sample key, draw `z0 ~ N(0, I_D)` and a run key, then run
    `sampler` on a batch of one. `params` is the conditional energy, or, with `energy_for_index`, anything from
    which `energy_for_index(params, index)` builds sample `index`'s energy (e.g. per-sample targets
    `y = table[index]`). `init_for_index(params, index) -> z0[D]` replaces the N(0, I) start (sequential editing
    starts from the previous step's latents). Stats are the sampler's per-sample statistics as scalars."""
    def per_sample(params, key, index):
        k_init, k_run = jax.random.split(key)
        if init_for_index is None:
            z0 = jax.random.normal(k_init, (1, int(latent_dim)), jnp.float32)
        else:
            z0 = jnp.reshape(init_for_index(params, index), (1, int(latent_dim))).astype(jnp.float32)
        energy = params if energy_for_index is None else energy_for_index(params, index)
        out = run(k_run, sampler, energy, z0, options)
        stats = {}
        for name, v in out.stats.items():
            v = jnp.asarray(v)
            if v.size == 1:
                stats[name] = jnp.reshape(v, ())
        return out.z[0], out.success[0], stats

    return per_sample


def joint_ode_fn(options: Any, latent_dim: int, *,
                 init_for_indices: Optional[Callable[[Any, jax.Array], jax.Array]] = None,
                 sampler: str = "ode") -> Callable:
    """A *batched* chunk body for the ODE's joint batch mode (one step-size sequence for the whole chunk, as
    torchdiffeq solves LACE's batches): `f(params, keys[B], indices[B]) -> (z[B, D], success[B], stats)`, with the
    same per-sample `z0` as `sampler_fn`. Samples then depend on the chunk they share (chunk size and device count
    change the step sizes, within the solver tolerance); `generate` accepts it in place of a per-sample function.
    `params` is one conditional energy for every sample, or an `energy.BatchedEnergy` over all `num_samples`
    samples (per-sample targets or anchors), of which the chunk's rows are taken. `init_for_indices(params,
    indices) -> z0[B, D]` replaces the N(0, I) starts (sequential editing). `sampler`: 'ode' or 'ode_tc' (the
    time-changed flow, `run`)."""
    if sampler not in ("ode", "ode_tc"):
        raise ValueError(f"joint_ode_fn: sampler must be 'ode' or 'ode_tc', got {sampler!r}")
    if getattr(options, "batch_mode", "joint") != "joint":
        options = dataclasses.replace(options, batch_mode="joint")

    def batched(params, keys, indices):
        if init_for_indices is None:
            z0 = jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[0], (int(latent_dim),),
                                                      jnp.float32))(keys)
        else:
            z0 = jnp.asarray(init_for_indices(params, indices), jnp.float32)
        energy = params.take(indices) if isinstance(params, en.BatchedEnergy) else params
        out = run(keys[0], sampler, energy, z0, options)
        stats = {n: jnp.broadcast_to(jnp.asarray(v), (z0.shape[0],)) for n, v in out.stats.items()
                 if jnp.size(v) in (1, z0.shape[0])}
        return out.z, out.success, stats

    batched.batched = True
    return batched
