"""The matmul precision of the sampler's drift: one policy name, one place that turns it into a matmul.

A drift evaluation is matmuls through the StyleGAN2 mapping and the latent classifier (forward and input
gradient). Their precision is a static choice of the world (`config["precision"]`); everything else — the ODE
state, the solver's arithmetic, biases, activations, normalisation — stays float32 whatever the policy.

* `highest` — float32 products (`Precision.HIGHEST`), the reference.
* `tf32`    — TensorFloat-32 products with float32 accumulation (`DotAlgorithmPreset.TF32_TF32_F32`) on a GPU;
  backends without TF32 units (CPU, TPU) compute `highest` instead (XLA:CPU refuses the TF32 algorithm).
* `bf16`    — both operands rounded to bfloat16, products accumulated in float32
  (`preferred_element_type=float32`), on every backend (slower than float32 on a CPU without bf16 units).
* `auto`    — `highest` on CPU, `GPU_DEFAULT` on a GPU (`resolve`; docs/performance.md has the numbers).

The policy is a static argument (a Python string in the pytree's static fields), so each one compiles its own
program and costs nothing at run time.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

POLICIES = ("highest", "tf32", "bf16")
CHOICES = POLICIES + ("auto",)
DEFAULT = "highest"
# what `auto` means on a GPU, chosen from benchmarks/sampling.py's precision section on an H200
# (docs/performance.md, "Matmul precision of the drift": at LACE's final-latent error with the compat and best solves)
GPU_DEFAULT = "tf32"


def check(policy: Any) -> str:
    """`policy` if it names a policy of `CHOICES`, else a ValueError that lists them."""
    if not isinstance(policy, str) or policy not in CHOICES:
        raise ValueError(f"precision must be one of {', '.join(CHOICES)}; got {policy!r}")
    return policy


def resolve(policy: Any, backend: str | None = None) -> str:
    """The concrete policy (one of `POLICIES`) for `backend` (default: JAX's default backend): `auto` becomes
    `highest` on CPU/TPU and `GPU_DEFAULT` on a GPU."""
    policy = check(policy)
    if policy != "auto":
        return policy
    backend = jax.default_backend() if backend is None else backend
    return GPU_DEFAULT if backend in ("gpu", "cuda", "rocm") else DEFAULT


def algorithm(policy: str, backend: str | None = None) -> str:
    """What the products of `policy` compute on `backend` (default: JAX's default backend), in words: `tf32` is
    float32 where the backend has no TF32 units."""
    backend = jax.default_backend() if backend is None else backend
    if policy == "bf16":
        return "bf16 operands, f32 accumulation"
    if policy == "tf32" and backend == "gpu":
        return "tf32 operands, f32 accumulation"
    if policy in POLICIES:
        return "f32"
    raise ValueError(f"precision.algorithm: policy must be one of {', '.join(POLICIES)}; got {policy!r}")


def _dot_precision(policy: str):
    if policy == "tf32" and jax.default_backend() == "gpu":
        return lax.DotAlgorithmPreset.TF32_TF32_F32
    return lax.Precision.HIGHEST


def matmul(a: jax.Array, b: jax.Array, policy: str = DEFAULT) -> jax.Array:
    """`a @ b` (float32 result) under `policy` (one of `POLICIES`)."""
    if policy == "bf16":
        return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    if policy not in POLICIES:
        raise ValueError(f"precision.matmul: policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    return jnp.matmul(a, b, precision=_dot_precision(policy))


def dot_general(policy: str = DEFAULT) -> Callable:
    """A `lax.dot_general` replacement under `policy`, for modules that take one (`flax.linen.Dense(dot_general=)`):
    the module's own precision argument is overridden."""
    if policy not in POLICIES:
        raise ValueError(f"precision.dot_general: policy must be one of {', '.join(POLICIES)}; got {policy!r}")

    def dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kw):
        if policy == "bf16":
            return lax.dot_general(lhs.astype(jnp.bfloat16), rhs.astype(jnp.bfloat16), dimension_numbers,
                                   preferred_element_type=jnp.float32)
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=_dot_precision(policy),
                               preferred_element_type=preferred_element_type)

    return dot


__all__ = ["POLICIES", "CHOICES", "DEFAULT", "GPU_DEFAULT", "check", "resolve", "algorithm", "matmul",
           "dot_general"]
