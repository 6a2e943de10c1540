"""The FID network: pytorch-fid's `fid_inception_v3` (TensorFlow's 2015-12-05 InceptionV3 graph as ported to torch)
in Flax, NHWC inside, returning the 2048 pool3 features that FID is computed from.

What pytorch-fid 0.3.0 does, step by step (`InceptionV3([3], resize_input=True, normalize_input=True)`):

1. images → float32 in [0, 1] (`uint8 / 255`);
2. bilinear resize to 299×299 with `align_corners=False` and *no* antialiasing (`F.interpolate`), also for inputs
   larger than 299 and as the identity for 299 — `resize_bilinear` below, written out with gathers and weights
   (`jax.image.resize` antialiases when it downscales, so it is not used);
3. `x = 2x − 1`;
4. the network: `BasicConv2d` = conv without bias → BatchNorm with running statistics, eps = 0.001 → ReLU; explicit
   symmetric paddings; 3×3 / stride-2 max pools without padding; the FID blocks' pool branch is a 3×3 average pool
   with `count_include_pad=False` (TensorFlow's), except `Mixed_7c`, where it is a 3×3 *max* pool (pad −∞);
5. pool3 = mean over the final 8×8 map.

Variables (as `ports.inception` converts them): `params/<Block>[/<branch>]/conv/kernel [kh, kw, I, O]`,
`params/.../bn/{scale, bias}`, `batch_stats/.../bn/{mean, var}`; names follow the torch state dict
(`Mixed_6e.branch7x7_2.conv.weight` → `params/Mixed_6e/branch7x7_2/conv/kernel`). The classifier (`fc`) is not
part of the model: FID never uses it.

`FIDInceptionV3(capture=True)` also `sow`s the activations after every named layer into the collection
`intermediates` as `probe_<name>` (the probes of the reference fixture); `probe_names()` lists them in order,
`capture_probes` returns them.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_EPS = 1e-3
RESOLUTION = 299
FEATURES = 2048
_PROBES = ("input", "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "pool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "pool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
           "Mixed_7a", "Mixed_7b", "Mixed_7c")


def probe_names() -> tuple[str, ...]:
    """Names of the activations `FIDInceptionV3(capture=True)` records, input to `Mixed_7c`."""
    return _PROBES


# --------------------------------------------------------------------------------------------------------------
# Input: resize and normalise exactly as pytorch-fid does.

def bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: the two source indices and their weights of torch's bilinear interpolation with
    `align_corners=False` (no antialiasing), computed in float32 as torch computes them on CPU.

    src = max((dst + 0.5)·in/out − 0.5, 0), i0 = floor(src), i1 = min(i0 + 1, in − 1), weights 1 − λ and λ with
    λ = src − i0."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"bilinear_taps: sizes must be positive, got {in_size} -> {out_size}")
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0)).astype(np.float32)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0.astype(np.int32), i1.astype(np.int32), (np.float32(1.0) - lam).astype(np.float32), lam


def resize_bilinear(x: jax.Array, size: int = RESOLUTION) -> jax.Array:
    """Resize NHWC float images to size×size like `F.interpolate(..., mode='bilinear', align_corners=False)`:
    first along W, then along H (torch's order of the two passes)."""
    if x.ndim != 4:
        raise ValueError(f"resize_bilinear: expected NHWC images, got shape {x.shape}")
    _, h, w, _ = x.shape
    if (h, w) == (size, size):
        return x                      # torch's weights are exactly (1, 0) here: the identity
    c0, c1, cw0, cw1 = bilinear_taps(w, size)
    x = (jnp.take(x, c0, axis=2) * cw0[None, None, :, None]
         + jnp.take(x, c1, axis=2) * cw1[None, None, :, None])
    r0, r1, rw0, rw1 = bilinear_taps(h, size)
    return (jnp.take(x, r0, axis=1) * rw0[None, :, None, None]
            + jnp.take(x, r1, axis=1) * rw1[None, :, None, None])


def preprocess(images: jax.Array) -> jax.Array:
    """What pytorch-fid feeds the network: uint8 [N, H, W, 3] → `/255` → bilinear 299×299 → `2x − 1` (float32).

    Floating images are taken as already in [−1, 1] (a generator's output, LACE's convention: its evaluation passes
    `G.synthesis(...)` as is to `InceptionV3(normalize_input=False)`) and are only resized. Resizing is linear and
    its weights sum to 1, so both routes agree up to float32 rounding for the same picture."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images [N, H, W, 3] (NHWC RGB), got shape {images.shape}")
    if images.dtype == jnp.uint8:
        x = images.astype(jnp.float32) / jnp.float32(255.0)
        return jnp.float32(2.0) * resize_bilinear(x) - jnp.float32(1.0)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"expected uint8 or floating images, got dtype {images.dtype}")
    return resize_bilinear(images.astype(jnp.float32))


# --------------------------------------------------------------------------------------------------------------
# Layers.

def _pad_pairs(padding: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    return (padding[0], padding[0]), (padding[1], padding[1])


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


def _avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
    """3×3, stride 1, pad 1 average that divides by the number of real pixels (`count_include_pad=False`)."""
    total = lax.reduce_window(x, jnp.array(0.0, x.dtype), lax.add, (1, 3, 3, 1), (1, 1, 1, 1),
                              ((0, 0), (1, 1), (1, 1), (0, 0)))

    def counts(n: int) -> np.ndarray:
        i = np.arange(n)
        return (np.minimum(i + 1, n - 1) - np.maximum(i - 1, 0) + 1).astype(np.float32)

    div = counts(x.shape[1])[:, None] * counts(x.shape[2])[None, :]
    return total / jnp.asarray(div, x.dtype)[None, :, :, None]


class BasicConv2d(nn.Module):
    """conv (no bias) → BatchNorm (running statistics, eps 0.001) → ReLU."""
    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    precision: Any = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(self.features, self.kernel, strides=(self.stride, self.stride), padding=_pad_pairs(self.padding),
                    use_bias=False, precision=self.precision, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, name="bn")(x)
        return nn.relu(x)


class _Block(nn.Module):
    precision: Any = lax.Precision.HIGHEST

    def conv(self, features: int, kernel: tuple[int, int], name: str, stride: int = 1,
             padding: tuple[int, int] = (0, 0)) -> BasicConv2d:
        return BasicConv2d(features, kernel, stride, padding, precision=self.precision, name=name)


class FIDInceptionA(_Block):
    """`Mixed_5b–5d`: [1x1, 5x5, 3x3dbl, avg-pool → 1x1]."""
    pool_features: int = 32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = self.conv(64, (1, 1), "branch1x1")(x)
        b5 = self.conv(48, (1, 1), "branch5x5_1")(x)
        b5 = self.conv(64, (5, 5), "branch5x5_2", padding=(2, 2))(b5)
        b3 = self.conv(64, (1, 1), "branch3x3dbl_1")(x)
        b3 = self.conv(96, (3, 3), "branch3x3dbl_2", padding=(1, 1))(b3)
        b3 = self.conv(96, (3, 3), "branch3x3dbl_3", padding=(1, 1))(b3)
        bp = self.conv(self.pool_features, (1, 1), "branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Block):
    """`Mixed_6a` (35 → 17): [3x3 s2, 3x3dbl s2, max-pool s2]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.conv(384, (3, 3), "branch3x3", stride=2)(x)
        bd = self.conv(64, (1, 1), "branch3x3dbl_1")(x)
        bd = self.conv(96, (3, 3), "branch3x3dbl_2", padding=(1, 1))(bd)
        bd = self.conv(96, (3, 3), "branch3x3dbl_3", stride=2)(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionC(_Block):
    """`Mixed_6b–6e`: [1x1, 1x7→7x1, 7x1→1x7→7x1→1x7, avg-pool → 1x1] with `channels_7x7` inside."""
    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.channels_7x7
        b1 = self.conv(192, (1, 1), "branch1x1")(x)
        b7 = self.conv(c, (1, 1), "branch7x7_1")(x)
        b7 = self.conv(c, (1, 7), "branch7x7_2", padding=(0, 3))(b7)
        b7 = self.conv(192, (7, 1), "branch7x7_3", padding=(3, 0))(b7)
        bd = self.conv(c, (1, 1), "branch7x7dbl_1")(x)
        bd = self.conv(c, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd)
        bd = self.conv(c, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd)
        bd = self.conv(c, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd)
        bd = self.conv(192, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd)
        bp = self.conv(192, (1, 1), "branch_pool")(_avg_pool_3x3_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Block):
    """`Mixed_7a` (17 → 8): [1x1→3x3 s2, 1x1→1x7→7x1→3x3 s2, max-pool s2]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.conv(192, (1, 1), "branch3x3_1")(x)
        b3 = self.conv(320, (3, 3), "branch3x3_2", stride=2)(b3)
        b7 = self.conv(192, (1, 1), "branch7x7x3_1")(x)
        b7 = self.conv(192, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7)
        b7 = self.conv(192, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7)
        b7 = self.conv(192, (3, 3), "branch7x7x3_4", stride=2)(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionE(_Block):
    """`Mixed_7b` (pool 'avg', FIDInceptionE_1) and `Mixed_7c` (pool 'max', FIDInceptionE_2):
    [1x1, 3x3_2a, 3x3_2b, 3x3dbl_3a, 3x3dbl_3b, pool → 1x1]."""
    pool: str = "avg"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = self.conv(320, (1, 1), "branch1x1")(x)
        b3 = self.conv(384, (1, 1), "branch3x3_1")(x)
        b3a = self.conv(384, (1, 3), "branch3x3_2a", padding=(0, 1))(b3)
        b3b = self.conv(384, (3, 1), "branch3x3_2b", padding=(1, 0))(b3)
        bd = self.conv(448, (1, 1), "branch3x3dbl_1")(x)
        bd = self.conv(384, (3, 3), "branch3x3dbl_2", padding=(1, 1))(bd)
        bda = self.conv(384, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd)
        bdb = self.conv(384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd)
        if self.pool == "avg":
            pooled = _avg_pool_3x3_exclude_pad(x)
        elif self.pool == "max":
            pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        else:
            raise ValueError(f"FIDInceptionE: pool must be 'avg' or 'max', got {self.pool!r}")
        bp = self.conv(192, (1, 1), "branch_pool")(pooled)
        return jnp.concatenate([b1, b3a, b3b, bda, bdb, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """`__call__(x [N, 299, 299, 3] float32, already resized and in [−1, 1]) -> pool3 [N, 2048]`.

    `capture=True` sows every probe (see `probe_names`) into `intermediates`; `precision` is that of every
    convolution (HIGHEST keeps float32 convolutions out of TF32 on GPUs; CPUs compute float32 either way)."""
    capture: bool = False
    precision: Any = lax.Precision.HIGHEST

    def _probe(self, name: str, x: jax.Array) -> jax.Array:
        if self.capture:
            self.sow("intermediates", f"probe_{name}", x)   # (a submodule may carry the bare name)
        return x

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[1:] != (RESOLUTION, RESOLUTION, 3):
            raise ValueError(f"FIDInceptionV3 expects [N, {RESOLUTION}, {RESOLUTION}, 3] inputs (see preprocess), "
                             f"got shape {x.shape}")
        p, cv = self.precision, self._probe
        x = cv("input", x)
        x = cv("Conv2d_1a_3x3", BasicConv2d(32, (3, 3), 2, precision=p, name="Conv2d_1a_3x3")(x))
        x = cv("Conv2d_2a_3x3", BasicConv2d(32, (3, 3), precision=p, name="Conv2d_2a_3x3")(x))
        x = cv("Conv2d_2b_3x3", BasicConv2d(64, (3, 3), padding=(1, 1), precision=p, name="Conv2d_2b_3x3")(x))
        x = cv("pool1", _max_pool_3x3_s2(x))
        x = cv("Conv2d_3b_1x1", BasicConv2d(80, (1, 1), precision=p, name="Conv2d_3b_1x1")(x))
        x = cv("Conv2d_4a_3x3", BasicConv2d(192, (3, 3), precision=p, name="Conv2d_4a_3x3")(x))
        x = cv("pool2", _max_pool_3x3_s2(x))
        for name, pool_features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
            x = cv(name, FIDInceptionA(pool_features=pool_features, precision=p, name=name)(x))
        x = cv("Mixed_6a", InceptionB(precision=p, name="Mixed_6a")(x))
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            x = cv(name, FIDInceptionC(channels_7x7=c7, precision=p, name=name)(x))
        x = cv("Mixed_7a", InceptionD(precision=p, name="Mixed_7a")(x))
        x = cv("Mixed_7b", FIDInceptionE(pool="avg", precision=p, name="Mixed_7b")(x))
        x = cv("Mixed_7c", FIDInceptionE(pool="max", precision=p, name="Mixed_7c")(x))
        return jnp.mean(x, axis=(1, 2))


# --------------------------------------------------------------------------------------------------------------
# Helpers.

@functools.lru_cache(maxsize=1)
def _variable_shapes() -> Any:
    x = jax.ShapeDtypeStruct((1, RESOLUTION, RESOLUTION, 3), jnp.float32)
    tree = jax.eval_shape(lambda k, x: FIDInceptionV3().init(k, x), jax.random.PRNGKey(0), x)
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), dict(tree))


def variable_shapes() -> dict:
    """The variable tree of `FIDInceptionV3` as `jax.ShapeDtypeStruct`s (`{"params": ..., "batch_stats": ...}`),
    without computing anything (what `ports.inception` fills and checkpoints are checked against). Traced once
    per process; each call returns a fresh tree."""
    return jax.tree_util.tree_map(lambda a: a, _variable_shapes())


def pool3(variables: Any, x: jax.Array) -> jax.Array:
    """pool3 features [N, 2048] of already preprocessed inputs [N, 299, 299, 3]."""
    return FIDInceptionV3().apply(variables, x)


def capture_probes(variables: Any, x: jax.Array,
                   names: Sequence[str] | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(pool3 [N, 2048], {probe name: NHWC activation}) of preprocessed inputs x [N, 299, 299, 3] — for bisecting
    against reference activations; `names` limits what is returned (default: all of `probe_names()`)."""
    keep = probe_names() if names is None else tuple(names)
    unknown = [n for n in keep if n not in _PROBES]
    if unknown:
        raise ValueError(f"unknown probe names {unknown}; known: {list(_PROBES)}")
    out, state = FIDInceptionV3(capture=True).apply(variables, x, mutable=["intermediates"])
    return out, {n: state["intermediates"][f"probe_{n}"][0] for n in keep}
