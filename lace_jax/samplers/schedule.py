"""The VP noise schedule of LACE's latent samplers: β(t), and the time change s(t) that makes LACE's PF-ODE
autonomous. One object for the ODE, the time-changed ODE and the VP-SDE (and the default of the diffusion models'
linear schedule), so β = 0.1 → 20 is written once.

    β(t) = β_min + t (β_max − β_min)
    s(t) = ½ ∫_t^1 β(τ) dτ = ½ [β_min (1 − t) + ½ (β_max − β_min)(1 − t²)]     (ds/dt = −½ β(t))
    t(s) = the inverse of s on t ∈ [−β_min/(β_max − β_min), 1] (where β ≥ 0), t = 1 at s = 0

A `VPSchedule` is a pytree (β_min, β_max are leaves), so it can be passed through `jit` as data.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax.numpy as jnp

BETA_MIN, BETA_MAX = 0.1, 20.0


@flax.struct.dataclass
class VPSchedule:
    """β(t) = β_min + t(β_max − β_min) with its time change s(t) and inverse t(s) (see the module docstring)."""
    beta_min: Any = BETA_MIN
    beta_max: Any = BETA_MAX

    def beta(self, t):
        """β(t) = β_min + t(β_max − β_min) (LACE `VPODE`)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def s_of_t(self, t):
        """s(t) = ½ ∫_t^1 β(τ) dτ."""
        return 0.5 * (self.beta_min * (1.0 - t) + 0.5 * (self.beta_max - self.beta_min) * (1.0 - t * t))

    def t_of_s(self, s):
        """The inverse of `s_of_t`: the root of ½k t² + β_min t − (β_min + ½k − 2s) = 0 (k = β_max − β_min) on
        the branch with t = 1 at s = 0."""
        k = self.beta_max - self.beta_min
        c = self.beta_min + 0.5 * k - 2.0 * s
        return (-self.beta_min + jnp.sqrt(self.beta_min * self.beta_min + 2.0 * k * c)) / k


VP = VPSchedule()
"""LACE's schedule: β_min = 0.1, β_max = 20."""

__all__ = ["BETA_MIN", "BETA_MAX", "VPSchedule", "VP"]
