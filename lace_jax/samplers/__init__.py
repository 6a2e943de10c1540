"""lace_jax.samplers: pure, jittable samplers on energies (see docs/architecture.md).

* `langevin`: `sample_sgld` (LACE SGLD), `sample_ula`.
* `mcmc`: `ula_step`, `mala_step`, `hmc_step`, `mcmc_level`, `annealed_mcmc` (ULA / MALA / HMC / U-HMC).
"""
from lace_jax.samplers.langevin import LangevinResult, sample_sgld, sample_ula, sgld_step
from lace_jax.samplers.mcmc import (AnnealedResult, MCMCState, annealed_mcmc, hmc_step, mala_step, mcmc_level,
                                    ula_step)
