"""lace_jax.samplers: pure, jittable samplers on energies (see docs/architecture.md).

* `ode`: `sample_ode` — LACE's VP probability-flow ODE (Diffrax dopri5/tsit5/heun/euler, joint or independent
  batches, or torchdiffeq-compatible dopri5), `vp_drift`, `fixed_grid`.
* `langevin`: `sample_sgld` (LACE SGLD), `sample_ula`.
* `mcmc`: `ula_step`, `mala_step`, `hmc_step`, `mcmc_level`, `annealed_mcmc` (ULA / MALA / HMC / U-HMC).
* `sde`: `sample_sde_pc` (any score energy), `sample_vpsde_pc` (LACE: conditional energy + prior) — VP-SDE predictor–corrector (reverse-diffusion predictor, Langevin corrector, target SNR).
"""
from lace_jax.samplers.langevin import LangevinResult, sample_sgld, sample_ula, sgld_step
from lace_jax.samplers.mcmc import (AnnealedResult, MCMCState, annealed_mcmc, hmc_step, mala_step, mcmc_level,
                                    ula_step)
from lace_jax.samplers.ode import ODEResult, fixed_grid, sample_ode, vp_drift
from lace_jax.samplers.sde import SDEResult, sample_sde_pc, sample_vpsde_pc
from lace_jax.samplers.dispatch import SampleOutput, SamplerOptions, run
