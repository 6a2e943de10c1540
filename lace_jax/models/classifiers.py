"""LACE's latent classifier (`DenseEmbedder`) in Flax and pytree-callable latent maps (the torch state-dict
conversion is `ports.lace_classifier.params_from_state_dict`).

LACE classifies the latent `w = g(z)` of a StyleGAN2 with a small MLP written as 1×1 convolutions; on a vector
that is a stack of dense layers. Hidden sizes are `linspace(input_dim, up_dim, depth).astype(int)` (e.g.
64 → 53 → 42 → 32), each followed by LeakyReLU(0.2) (LACE's `norm=None`; no other norm is supported). The last
layer is either

* `linear` (CIFAR-10): one `[up_dim → num_classes]` layer, the output is the logits array, or
* `heads` (FFHQ, AFHQ, MetFaces): one `[up_dim → sum(num_classes_list)]` layer whose output is split into one array
  per attribute head (`num_classes_list = [2]`: a discrete attribute, `[1]`: a continuous one).

Variable layout (`variables = {"params": ...}`, kernels `[in, out]` as `flax.linen.Dense`):

    params/net_{l}/{kernel [d_l, d_{l+1}], bias [d_{l+1}]}    ← torch `net.{3l}.weight [d_{l+1}, d_l, 1, 1]`, `.bias`
    params/linear/{kernel, bias}  or  params/heads/{kernel, bias}   ← `linear.*` / `heads.*` (`[K, up_dim]`)

The energies of `lace_jax.energy` need classifiers and maps that are *pytrees* (weights as leaves, architecture
static), so one jitted sampler serves every weight set: `LatentClassifier` and `MappingW` are such callables on a
single latent `z[D]`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lace_jax.models import packed as P
from lace_jax.models import precision as _precision
from lace_jax.models import stylegan2

LAYOUTS = ("linear", "heads")


def dense_embedder_dims(input_dim: int, up_dim: int, depth: int = 4) -> tuple[int, ...]:
    """LACE's hidden sizes: `np.linspace(input_dim, up_dim, depth).astype(int)` (input and output included)."""
    if depth < 2:
        raise ValueError(f"dense_embedder_dims: depth must be >= 2, got {depth}")
    return tuple(int(d) for d in np.linspace(input_dim, up_dim, depth).astype(int))


class DenseEmbedder(nn.Module):
    """LACE `DenseEmbedder` (norm None): `x [..., dims[0]]` → logits `[..., num_classes]` (layout 'linear') or a
    tuple of per-head arrays `[..., n_k]` (layout 'heads', `num_classes_list`). Exactly one of `num_classes` and
    `num_classes_list` is set. `precision`: the matmul policy (`lace_jax.models.precision`; float32 results)."""

    dims: tuple[int, ...]
    num_classes: int | None = None
    num_classes_list: tuple[int, ...] | None = None
    negative_slope: float = 0.2
    precision: str = _precision.DEFAULT

    @property
    def layout(self) -> str:
        return "heads" if self.num_classes_list is not None else "linear"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        if (self.num_classes is None) == (self.num_classes_list is None):
            raise ValueError("DenseEmbedder: set exactly one of num_classes ('linear' layout) and "
                             f"num_classes_list ('heads' layout); got {self.num_classes!r}, {self.num_classes_list!r}")
        if len(self.dims) < 2:
            raise ValueError(f"DenseEmbedder: dims needs input and output sizes, got {self.dims!r}")
        if x.shape[-1] != self.dims[0]:
            raise ValueError(f"DenseEmbedder: input has {x.shape[-1]} features (shape {x.shape}), "
                             f"expected {self.dims[0]}")
        kw = dict(precision=lax.Precision.HIGHEST)
        if self.precision != _precision.DEFAULT:
            kw = dict(dot_general=_precision.dot_general(self.precision))
        for l, out in enumerate(self.dims[1:]):
            x = nn.Dense(int(out), name=f"net_{l}", **kw)(x)
            x = nn.leaky_relu(x, self.negative_slope)
        if self.num_classes_list is None:
            return nn.Dense(int(self.num_classes), name="linear", **kw)(x)
        sizes = tuple(int(n) for n in self.num_classes_list)
        out = nn.Dense(sum(sizes), name="heads", **kw)(x)
        splits = np.cumsum(sizes)[:-1].tolist()
        return tuple(jnp.split(out, splits, axis=-1))

    @classmethod
    def from_lace(cls, input_dim: int, up_dim: int, depth: int = 4, num_classes: int | None = None,
                  num_classes_list: Sequence[int] | None = None) -> "DenseEmbedder":
        """The module LACE builds with `DenseEmbedder(input_dim, up_dim, depth, num_classes | num_classes_list)`."""
        return cls(dims=dense_embedder_dims(input_dim, up_dim, depth), num_classes=num_classes,
                   num_classes_list=None if num_classes_list is None else tuple(int(n) for n in num_classes_list))


# --------------------------------------------------------------------------------------------------------------
# Pytree-callables on a single latent.

@flax.struct.dataclass
class LatentClassifier:
    """`z[D]` → the DenseEmbedder's output on `g(z)` (`g` a pytree-callable such as `MappingW`, or None for the
    identity). Weights are pytree leaves; the architecture is static. `head=None` returns every head (a tuple, or
    the logits array for the 'linear' layout); `head=k` returns head k only.

    `create` also stores contiguous transposes of the kernels (`packed`, see `lace_jax.models.packed`: the same
    function with faster small-batch kernels in the sampler's loop); `packed=None` runs the flax module on
    `variables`. Replacing `variables` by hand needs a new `create`. `precision` (static): the matmul policy of
    its layers (`lace_jax.models.precision`: highest, tf32, bf16); `g`'s own precision is `g`'s."""

    variables: Any
    g: Any = None
    dims: tuple[int, ...] = flax.struct.field(pytree_node=False, default=())
    num_classes: int | None = flax.struct.field(pytree_node=False, default=None)
    num_classes_list: tuple[int, ...] | None = flax.struct.field(pytree_node=False, default=None)
    head: int | None = flax.struct.field(pytree_node=False, default=None)
    packed: Any = None
    precision: str = flax.struct.field(pytree_node=False, default=_precision.DEFAULT)

    @classmethod
    def create(cls, config: Mapping[str, Any], variables: Any, g: Any = None,
               head: int | None = None, pack: bool = True, precision: str = _precision.DEFAULT
               ) -> "LatentClassifier":
        ncl = config.get("num_classes_list")
        clf = cls(variables=variables, g=g, dims=tuple(int(d) for d in config["dims"]),
                  num_classes=config.get("num_classes"),
                  num_classes_list=None if ncl is None else tuple(int(n) for n in ncl), head=head)
        clf = clf.with_precision(precision)
        return clf.replace(packed=P.pack_embedder(variables, clf._layer_names())) if pack else clf

    def with_precision(self, precision: str) -> "LatentClassifier":
        """The same classifier with its layers' matmuls under `precision` (one of `precision.POLICIES`)."""
        if precision not in _precision.POLICIES:
            raise ValueError(f"LatentClassifier: precision must be one of {', '.join(_precision.POLICIES)}; "
                             f"got {precision!r}")
        return self.replace(precision=precision)

    def module(self) -> DenseEmbedder:
        return DenseEmbedder(dims=self.dims, num_classes=self.num_classes, num_classes_list=self.num_classes_list,
                             precision=self.precision)

    def select(self, head: int | None) -> "LatentClassifier":
        """The same classifier returning only head `head`."""
        n = 1 if self.num_classes_list is None else len(self.num_classes_list)
        if head is not None and not 0 <= head < n:
            raise ValueError(f"LatentClassifier.select: head {head} out of range, the classifier has {n} head(s)")
        return self.replace(head=head)

    def _layer_names(self) -> tuple[str, ...]:
        return P.embedder_names(len(self.dims) - 1, "linear" if self.num_classes_list is None else "heads")

    def _apply_packed(self, x: jax.Array):
        if x.shape[-1] != self.dims[0]:
            raise ValueError(f"DenseEmbedder: input has {x.shape[-1]} features (shape {x.shape}), "
                             f"expected {self.dims[0]}")
        out = P.apply_embedder(self.variables, self.packed, self._layer_names(), x, self.module().negative_slope,
                               policy=self.precision)
        if self.num_classes_list is None:
            return out
        splits = np.cumsum(self.num_classes_list)[:-1].tolist()
        return tuple(jnp.split(out, splits, axis=-1))

    def __call__(self, z: jax.Array) -> jax.Array | tuple[jax.Array, ...]:
        x = z if self.g is None else self.g(z)
        out = self.module().apply(self.variables, x) if self.packed is None else self._apply_packed(x)
        if self.head is None:
            return out
        return out[self.head] if isinstance(out, tuple) else out


@flax.struct.dataclass
class ProductOfExperts:
    """A discrete classifier whose class distribution is the normalised product of its members' (Hinton, 2002):
    `logits(z) = Σ_m log_softmax(member_m(z))`, so `softmax(logits) ∝ Π_m p_m(y | z)`. Every member maps the same
    single latent z to logits [K] (e.g. a `LatentClassifier` on w = mapping(z) and one on z). Why: LACE's ODE
    climbs a classifier's confidence and ends where that classifier is sure, which can be a pocket where only it
    is wrong (on the default model, `background=grey` led a third of black-background starts to a black image
    the w classifier was sure were grey; docs/default_model.md); independently trained members rarely share such pockets, and the
    product is only confident where all of them are. Pytree-callable: the members' weights are leaves."""

    members: tuple

    def __call__(self, z: jax.Array) -> jax.Array:
        if not isinstance(self.members, (tuple, list)) or not self.members:
            raise ValueError(f"ProductOfExperts: members must be a non-empty tuple, got {type(self.members)}")
        outs = [m(z) for m in self.members]
        shapes = {tuple(o.shape) for o in outs}
        if len(shapes) != 1:
            raise ValueError(f"ProductOfExperts: members return logits of different shapes {sorted(shapes)}")
        return sum(jax.nn.log_softmax(o, axis=-1) for o in outs)


@flax.struct.dataclass
class MappingW:
    """LACE's `z → w` on a single latent `z[z_dim]`: the StyleGAN2 mapping (no broadcast), truncated towards
    `w_avg` with ψ (ada: lerp; rosinality: `tl + ψ(w − tl)`), with class conditioning `c[c_dim]` for conditional
    generators (LACE CIFAR-10 passes zeros). `variables` needs only the mapping parts. `precision` (static): the
    matmul policy of the mapping's layers (`lace_jax.models.precision`; the label's branch stays float32)."""

    variables: Any
    c: Any = None
    truncation_psi: Any = 1.0
    config: stylegan2.StyleGAN2Config = flax.struct.field(pytree_node=False, default=None)
    packed: Any = None
    precision: str = flax.struct.field(pytree_node=False, default=_precision.DEFAULT)

    @classmethod
    def create(cls, config: stylegan2.StyleGAN2Config, variables: Mapping, *, c: Any = None,
               truncation_psi: float = 1.0, pack: bool = True, precision: str = _precision.DEFAULT) -> "MappingW":
        """`pack=True` (default) also builds `lace_jax.models.packed.pack_mapping` (gains applied, the fixed
        label's branch folded into the first bias, both weight layouts), which `__call__` then uses."""
        sub = {col: {"mapping": tree["mapping"]} for col, tree in variables.items()
               if col in ("params", "buffers") and "mapping" in tree}
        if "params" not in sub:
            raise ValueError(f"MappingW: variables have no params/mapping (collections {list(variables)})")
        if config.c_dim > 0:
            c = jnp.zeros((config.c_dim,), jnp.float32) if c is None else jnp.asarray(c, jnp.float32)
            if c.shape != (config.c_dim,):
                raise ValueError(f"MappingW: c must have shape [{config.c_dim}], got {c.shape}")
        elif c is not None:
            raise ValueError("MappingW: c given, but the generator is unconditional (c_dim = 0)")
        packed = P.pack_mapping(config, sub, c) if pack and config.z_dim > 0 else None
        return cls(variables=sub, c=c, truncation_psi=jnp.asarray(truncation_psi, jnp.float32), config=config,
                   packed=packed).with_precision(precision)

    def with_precision(self, precision: str) -> "MappingW":
        """The same map with the mapping's matmuls under `precision` (one of `precision.POLICIES`)."""
        if precision not in _precision.POLICIES:
            raise ValueError(f"MappingW: precision must be one of {', '.join(_precision.POLICIES)}; "
                             f"got {precision!r}")
        return self.replace(precision=precision)

    def __call__(self, z: jax.Array) -> jax.Array:
        if z.ndim != 1:
            raise ValueError(f"MappingW: expects one latent z[{self.config.z_dim}], got shape {z.shape} "
                             "(batch with jax.vmap)")
        if self.packed is not None:
            return P.apply_mapping(self.packed, z, activation=self.config.mapping_activation,
                                   truncation_psi=self.truncation_psi, variant=self.config.variant,
                                   policy=self.precision)
        c = None if self.c is None else self.c[None]
        return stylegan2.mapping_w(self.config, self.variables, z[None], c, truncation_psi=self.truncation_psi,
                                   precision=self.precision)[0]


def dense_embedder_apply(config: Mapping[str, Any], variables: Any, x: jax.Array):
    """Convenience: `DenseEmbedder(**config).apply(variables, x)`."""
    ncl = config.get("num_classes_list")
    return DenseEmbedder(dims=tuple(config["dims"]), num_classes=config.get("num_classes"),
                         num_classes_list=None if ncl is None else tuple(ncl)).apply(variables, x)


__all__ = ["DenseEmbedder", "dense_embedder_dims", "dense_embedder_apply",
           "LatentClassifier", "MappingW", "ProductOfExperts", "LAYOUTS"]
