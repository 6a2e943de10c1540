"""lace_jax.samplers: pure, jittable samplers on energies, one contract (see docs/architecture.md).

Every sampler is called `sample_xxx(key, energy, z0[B, D], *, options) -> XxxResult` (a NamedTuple with the
samples and `nfe`; deterministic solvers accept and ignore the key), and one entry point runs any of them by name:

    out = samplers.run(key, "ode", cond_energy, z0, samplers.SamplerOptions(rtol=1e-3, atol=1e-3))
    out.z, out.success, out.nfe, out.stats

* `sample_ode` — LACE's VP probability-flow ODE (Diffrax dopri5/tsit5/heun/euler, joint or independent batches,
  or torchdiffeq-compatible dopri5); `sample_ode_timechange` — the same ODE as an autonomous flow in s(t).
* `sample_sgld` (LACE SGLD), `sample_ula`; `mcmc_level` / `annealed_mcmc` (ULA / MALA / HMC / U-HMC kernels
  `ula_step`, `mala_step`, `hmc_step` on an `MCMCState`); `sample_sde_pc` / `sample_vpsde_pc` (VP-SDE
  predictor–corrector).
* `VPSchedule` / `VP`: β(t) = 0.1 → 20 and the time change s(t), t(s), shared by all of them.
* `NAMES`, `ODE_SOLVERS`, `TC_SOLVERS`: the sampler and solver names `run` (and the CLIs) accept.
"""
from lace_jax.samplers._solvers import ODE_SOLVERS, SOLVERS, TC_SOLVERS
from lace_jax.samplers._dispatch import (LANGEVIN, NAMES, SAMPLERS, TC_DEFAULTS, SampleOutput, SamplerOptions,
                                        joint_ode_fn, run, sampler_fn)
from lace_jax.samplers.langevin import LangevinResult, sample_sgld, sample_ula, sgld_step
from lace_jax.samplers.mcmc import (AnnealedResult, LevelResult, MCMCState, StepInfo, annealed_mcmc, hmc_step,
                                    init_state, mala_step, mcmc_level, ula_step)
from lace_jax.samplers.ode import ODEResult, fixed_grid, sample_ode, vp_drift
from lace_jax.samplers.schedule import VP, VPSchedule
from lace_jax.samplers.sde import SDEResult, sample_sde_pc, sample_vpsde_pc
from lace_jax.samplers.timechange import sample_ode_timechange

__all__ = ["ODE_SOLVERS", "SOLVERS", "TC_SOLVERS", "LANGEVIN", "NAMES", "SAMPLERS", "TC_DEFAULTS", "SampleOutput",
           "SamplerOptions", "joint_ode_fn", "run", "sampler_fn", "LangevinResult", "sample_sgld", "sample_ula",
           "sgld_step", "AnnealedResult", "LevelResult", "MCMCState", "StepInfo", "annealed_mcmc", "hmc_step",
           "init_state", "mala_step", "mcmc_level", "ula_step", "ODEResult", "fixed_grid", "sample_ode", "vp_drift",
           "VP", "VPSchedule", "SDEResult", "sample_sde_pc", "sample_vpsde_pc", "sample_ode_timechange"]
