"""Latent MLPs prepared for the sampler's inner loop: constants folded once, and kernels chosen by batch size.

A drift evaluation is one forward and one input-gradient pass through the mapping (8 × 512²) and the latent
classifier. Two things the flax modules redo on every evaluation are done once here, outside the solve:

* the equalised-lr gains (weight · lr/√fan_in, bias · lr), and
* for a conditional generator with a fixed label (LACE feeds CIFAR-10's mapping zero c) the whole label branch,
  a constant that folds into the first layer's bias — the first layer shrinks from `[z_dim + embed, w]` to
  `[z_dim, w]`, one matrix less to stream per pass.

At batch 1 on CPU the products are matrix-vector ones. XLA:CPU runs a plain `dot` on a parameter through a
single-threaded library matvec, but a `dot` whose operand is a transposed array becomes a "copy-dot" loop fusion
split across the cores and reading that array row by row, which is faster (docs/performance.md has the timings). So each layer keeps its weight in both layouts, `w [in, out]` and a real
contiguous copy `wt [out, in]`, and a custom VJP forms the forward product as `x · (wt)ᵀ` and the backward one as
`g · wᵀ`, each behind an optimisation barrier so that XLA does not fuse the bias or activation into the product
(which would turn it into an output fusion with a materialised transpose). For larger batches (and on other
backends) the barrier only blocks useful fusion, so a batching rule picks the
plain `x · w` / `g · wᵀ` there: the batch size is only known to the vmap rule, since energies are per-sample.
Every product runs under a matmul precision policy (`lace_jax.models.precision`: highest, tf32, bf16; a static
argument, float32 results), one custom-VJP function per policy.

The packed forms are pytrees of arrays (architecture static), so jitted samplers take them as arguments like the
flax variables; `MappingW` and `LatentClassifier` build and use them by default. Build them outside `jax.jit`:
inside a trace the copy is just a transpose XLA may fold away (still correct, no longer faster).
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lace_jax.models import ops, precision
from lace_jax.models.stylegan2 import truncate

_HP = lax.Precision.HIGHEST


class Dense(NamedTuple):
    """One affine layer `x · w + b` with `w [in, out]` and its contiguous transpose `wt [out, in]` (`wt == w.T`)."""
    w: jax.Array
    wt: jax.Array
    b: jax.Array


def make_dense(w: Any, b: Any) -> Dense:
    """A `Dense` from a `[in, out]` weight and a bias: the transposed copy is materialised here (a real array, not
    a view), which is the point of the layout."""
    w = jnp.asarray(w, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if w.ndim != 2 or b.shape != (w.shape[1],):
        raise ValueError(f"packed.make_dense: need w [in, out] and b [out], got {w.shape} and {b.shape}")
    return Dense(w=w, wt=_transposed(w), b=b)


# On CPU, batch sizes up to this use the matrix-vector forms below; larger ones (and other backends) the plain
# GEMM form, which XLA fuses with the bias and activation (the barrier that makes the small form fast slows
# large batches down; docs/performance.md).
SMALL_BATCH = 2


def _kernels(policy: str):
    """The four products of `affine` under a matmul precision policy (`lace_jax.models.precision`)."""
    def mm(a, b):
        return precision.matmul(a, b, policy)

    def fwd_small(x, w, wt):
        # x · wtᵀ as XLA:CPU's "copy-dot" loop fusion, split across the cores and reading wt row by row; the
        # barrier keeps the bias add from turning it into an output fusion, which would materialise the transpose
        return lax.optimization_barrier(mm(x, wt.T))

    def bwd_small(g, w, wt):
        return lax.optimization_barrier(mm(g, w.T))

    def fwd_large(x, w, wt):
        return mm(x, w)

    def bwd_large(g, w, wt):
        return mm(g, w.T)

    return mm, fwd_small, bwd_small, fwd_large, bwd_large


def _by_batch(small, large):
    """`f(a, w, wt)` (a [..., k] the batched operand) that runs `small` when vmapped over at most SMALL_BATCH rows
    and `large` otherwise: the batch size is only known to a batching rule."""
    f = jax.custom_batching.custom_vmap(large)

    @f.def_vmap
    def rule(axis_size, in_batched, a, w, wt):
        a_b, w_b, wt_b = in_batched
        if w_b or wt_b:                                    # per-sample weights: no layout trick applies
            ax = lambda flag: 0 if flag else None
            return jax.vmap(large, in_axes=(ax(a_b), ax(w_b), ax(wt_b)))(a, w, wt), True
        if not a_b:
            return large(a, w, wt), False
        use_small = axis_size <= SMALL_BATCH and jax.default_backend() == "cpu"
        return (small if use_small else large)(a, w, wt), True
    return f


def _make_affine(policy: str):
    mm, fwd_small, bwd_small, fwd_large, bwd_large = _kernels(policy)
    fwd = _by_batch(fwd_small, fwd_large)
    bwd = _by_batch(bwd_small, bwd_large)

    @jax.custom_vjp
    def affine_(x, w, wt):
        return mm(x, w)

    def affine_fwd(x, w, wt):
        return fwd(x, w, wt), (x, w, wt)

    def affine_bwd(res, g):
        x, w, wt = res
        dx = bwd(g, w, wt)
        xs = x.reshape(-1, x.shape[-1])
        gs = g.reshape(-1, g.shape[-1])
        dwt = mm(gs.T, xs)                                 # dL/dw, transposed: it lands on wt
        return dx, jnp.zeros_like(w), dwt

    affine_.defvjp(affine_fwd, affine_bwd)
    return affine_


# one custom-VJP product per policy, built once (the policy is static: each compiles its own program)
_AFFINE = {policy: _make_affine(policy) for policy in precision.POLICIES}


def _affine_for(policy: str):
    try:
        return _AFFINE[policy]
    except KeyError:
        raise ValueError(f"packed: precision must be one of {', '.join(precision.POLICIES)}; got {policy!r}") \
            from None


def affine(x: jax.Array, w: jax.Array, wt: jax.Array, policy: str = precision.DEFAULT) -> jax.Array:
    """`x · w` for `x [..., in]`, `w [in, out]` and `wt == w.T` as a contiguous array, with the batch-size-chosen
    kernels and the matmul precision `policy` (`lace_jax.models.precision`; float32 result). Differentiable in `x`
    and in the weights (the weight gradient lands on `wt`; `w`'s is zero)."""
    return _affine_for(policy)(x, w, wt)


def dense(layer: Dense, x: jax.Array, policy: str = precision.DEFAULT) -> jax.Array:
    """`x · w + b` for `x [..., in]` (see `affine`)."""
    return affine(x, layer.w, layer.wt, policy) + layer.b


class PackedMapping(NamedTuple):
    """The StyleGAN2 mapping `z → w` (no broadcast) for a fixed label: pixel-norm, dense layers with the mapping's
    activation (and its gain), truncation towards `w_avg`. Built by `pack_mapping`."""
    layers: tuple[Dense, ...]
    w_avg: jax.Array


def pack_mapping(config: Any, variables: Mapping, c: Any = None) -> PackedMapping:
    """Pack `variables['params']['mapping']` (+ `buffers/mapping/w_avg`) of a `StyleGAN2Config`. For `c_dim > 0`
    the label `c [c_dim]` is fixed and its branch is folded into the first layer's bias."""
    if config.z_dim <= 0:
        raise ValueError("packed.pack_mapping: the generator has no z input (z_dim = 0)")
    p = variables["params"]["mapping"]
    lr = float(config.lr_multiplier)
    layers = []
    for idx in range(config.mapping_layers):
        q = p[f"fc{idx}"]
        w = jnp.asarray(q["weight"], jnp.float32)
        fan_in = w.shape[0]
        w = w * jnp.float32(lr / np.sqrt(fan_in))
        b = jnp.asarray(q["bias"], jnp.float32) * jnp.float32(lr) if lr != 1 else jnp.asarray(q["bias"], jnp.float32)
        if idx == 0 and config.c_dim > 0:
            if c is None:
                raise ValueError("packed.pack_mapping: a conditional generator needs the label c")
            e = p["embed"]
            ew = jnp.asarray(e["weight"], jnp.float32)
            y = jnp.matmul(jnp.asarray(c, jnp.float32)[None], ew * jnp.float32(1 / np.sqrt(ew.shape[0])),
                           precision=_HP) + jnp.asarray(e["bias"], jnp.float32)
            y = ops.normalize_2nd_moment(y)
            b = b + jnp.matmul(y, w[config.z_dim:], precision=_HP)[0]
            w = w[:config.z_dim]
        layers.append(make_dense(w, b))
    w_avg = jnp.asarray(variables["buffers"]["mapping"]["w_avg"], jnp.float32)
    return PackedMapping(layers=tuple(layers), w_avg=w_avg)


def apply_mapping(packed: PackedMapping, z: jax.Array, *, activation: str = "lrelu",
                  truncation_psi: Any = 1.0, variant: str = "ada", policy: str = precision.DEFAULT) -> jax.Array:
    """`z [..., z_dim] → w [..., w_dim]`, equal to `stylegan2.mapping_w` with the packed label; the layers'
    products under the matmul precision `policy` (the label's branch was folded at float32)."""
    mm = _affine_for(policy)
    x = ops.normalize_2nd_moment(z.astype(jnp.float32))
    for layer in packed.layers:
        x = ops.bias_act(mm(x, layer.w, layer.wt), layer.b, act=activation)
    return truncate(x, packed.w_avg, truncation_psi, variant=variant)


def _transposed(w: Any) -> jax.Array:
    try:
        return jnp.asarray(np.ascontiguousarray(np.asarray(w, np.float32).T))
    except jax.errors.TracerArrayConversionError:     # packed inside a trace: correct, maybe not faster
        return jnp.asarray(w, jnp.float32).T


def embedder_names(num_hidden: int, last: str) -> tuple[str, ...]:
    """The `params` entries of a `DenseEmbedder` in order: `net_0 … net_{num_hidden-1}`, then `last`."""
    return tuple(f"net_{l}" for l in range(num_hidden)) + (last,)


def pack_embedder(variables: Mapping, names: tuple[str, ...]) -> tuple[jax.Array, ...]:
    """The contiguous transposes `[out, in]` of a `DenseEmbedder`'s kernels (the kernels and biases themselves stay
    in `variables`, so nothing else is duplicated)."""
    p = variables["params"]
    return tuple(_transposed(p[n]["kernel"]) for n in names)


def apply_embedder(variables: Mapping, wts: tuple[jax.Array, ...], names: tuple[str, ...], x: jax.Array,
                   negative_slope: float = 0.2, policy: str = precision.DEFAULT) -> jax.Array:
    """A `DenseEmbedder`'s forward pass (hidden layers with LeakyReLU(negative_slope), then the last affine layer,
    all outputs unsplit) with `affine`'s kernels under the matmul precision `policy`."""
    p = variables["params"]
    mm = _affine_for(policy)
    for i, (n, wt) in enumerate(zip(names, wts)):
        x = mm(x, p[n]["kernel"], wt) + p[n]["bias"]
        if i < len(names) - 1:
            x = jax.nn.leaky_relu(x, negative_slope)
    return x


__all__ = ["Dense", "make_dense", "affine", "dense", "PackedMapping", "pack_mapping", "apply_mapping",
           "embedder_names", "pack_embedder", "apply_embedder", "SMALL_BATCH"]
