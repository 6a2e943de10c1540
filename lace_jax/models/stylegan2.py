"""StyleGAN2 generator in Flax: mapping (z, c → ws) and synthesis (ws → image), one module for every variant.

Both ports (`ports/stylegan2_ada.py`, `ports/rosinality.py`) and our own training target the single variable layout
below. Weights are stored *raw* (equalised learning rate: N(0, 1) at init) and the runtime gains of upstream are
applied in the forward pass, so a trainer sees unit-variance parameters.

Variable layout (`variables = {"params": ..., "buffers": ...}`; R = block resolution, C = its channels, NHWC/HWIO):

    params/mapping/embed/{weight [c_dim, E], bias [E]}            (only if c_dim > 0; lr multiplier 1)
    params/mapping/fc{i}/{weight [in, out], bias [out]}           (gains lr/√in and lr at runtime)
    params/synthesis/b4/const [4, 4, C4]
    params/synthesis/bR/conv0/...                                 (R ≥ 8; up-sampling layer)
    params/synthesis/bR/conv1/{weight [3, 3, Cin, C], bias [C], noise_strength [], affine/{weight [w_dim, Cin],
                                 bias [Cin]}}
    params/synthesis/bR/torgb/{weight [1, 1, C, img_channels], bias [img_channels], affine/{weight, bias}}
                                 (every block for 'skip'; last block only for 'orig' and 'resnet')
    params/synthesis/bR/skip/weight [1, 1, Cin, C]                (R ≥ 8, 'resnet' only; no bias)
    buffers/mapping/w_avg [w_dim]                                 (truncation centre; EMA of w in training)
    buffers/synthesis/bR/conv{0,1}/noise_const [R, R]             (the fixed 'const' noise images)

Conventions mapped onto it:
* stylegan2-ada-pytorch: torch `[out, in]`/`[O, I, kh, kw]` weights are transposed to `[in, out]`/HWIO; the rest is
  one-to-one (`ws` indexing, gains, clamp, noise).
* rosinality: `PixelNorm` on z == 2nd-moment normalisation; `style.{i+1}` → `fc{i}`; `EqualLinear` gains are the
  same as ada's `FullyConnectedLayer`; `ModulatedConv2d.scale` cancels under demodulation (it only moves the 1e-8
  epsilon, a ≈1e-8 relative effect) and equals ada's ToRGB style gain 1/√in; the channel table is explicit
  (`channels`); `noises.noise_j` buffers × `noise.weight` == `noise_const × noise_strength`; `FusedLeakyReLU.bias`
  == layer bias (added after the noise, as ada); the ToRGB skip upsampling is the same [1,3,3,1] FIR. The only
  numerical difference kept is the truncation formula (`variant='rosinality'`: `tl + ψ(w − tl)`; ada: torch.lerp).

Images are NCHW float in [−1, 1] at the public boundary (`synthesis`, `generate`); intermediates are NHWC.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lace_jax.models import ops
from lace_jax.models import precision as _policy

NOISE_MODES = ("const", "random", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
VARIANTS = ("ada", "rosinality")


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Everything that fixes the generator's shape and maths (hashable: usable as a static jit argument).

    `channels` (explicit `{resolution: channels}`, stored as a sorted tuple of pairs) overrides the ada rule
    `min(channel_base // R, channel_max)`. `dtype` is the compute dtype of the synthesis convolutions ('float32' or
    'bfloat16'); mapping, styles, demodulation and the RGB accumulation stay float32. `fused_modconv` selects the
    grouped-convolution path of `ops.modulated_conv2d` (same maths)."""

    z_dim: int = 512
    c_dim: int = 0
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    # Mapping network.
    mapping_layers: int = 8
    embed_features: int | None = None       # None = w_dim
    layer_features: int | None = None       # None = w_dim
    mapping_activation: str = "lrelu"
    lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995        # EMA decay used by `update_w_avg` in training
    # Synthesis network.
    channel_base: int = 32768
    channel_max: int = 512
    channels: tuple[tuple[int, int], ...] | None = None
    architecture: str = "skip"
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    use_noise: bool = True
    activation: str = "lrelu"
    fused_modconv: bool = False
    variant: str = "ada"
    dtype: str = "float32"

    def __post_init__(self):
        if isinstance(self.channels, Mapping):
            object.__setattr__(self, "channels", tuple(sorted((int(k), int(v)) for k, v in self.channels.items())))
        elif self.channels is not None:
            object.__setattr__(self, "channels", tuple(sorted((int(k), int(v)) for k, v in self.channels)))
        object.__setattr__(self, "resample_filter", tuple(float(v) for v in self.resample_filter))
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"StyleGAN2Config: img_resolution must be a power of two >= 4, got {r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"StyleGAN2Config: architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"StyleGAN2Config: variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"StyleGAN2Config: dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.mapping_layers < 1:
            raise ValueError(f"StyleGAN2Config: mapping_layers must be >= 1, got {self.mapping_layers}")
        if self.channels is not None:
            missing = [res for res in self.block_resolutions if res not in dict(self.channels)]
            if missing:
                raise ValueError(f"StyleGAN2Config: channels table lacks resolutions {missing}")

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1))

    @property
    def channels_dict(self) -> dict[int, int]:
        if self.channels is not None:
            table = dict(self.channels)
            return {res: table[res] for res in self.block_resolutions}
        return {res: min(self.channel_base // res, self.channel_max) for res in self.block_resolutions}

    @property
    def num_ws(self) -> int:
        """Number of per-layer latents: one per conv layer plus the last ToRGB (= 2·log2(R) − 2)."""
        return 2 * len(self.block_resolutions)

    @property
    def compute_dtype(self) -> Any:
        return jnp.dtype(self.dtype)

    def replace(self, **kw) -> "StyleGAN2Config":
        return dataclasses.replace(self, **kw)


def _precision(dtype) -> lax.Precision:
    return lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else lax.Precision.DEFAULT


# --------------------------------------------------------------------------------------------------------------
# Layers.

class FullyConnected(nn.Module):
    """Equalised-lr dense layer (ada `FullyConnectedLayer`, rosinality `EqualLinear`): raw weight ~ N(0,1)/lr,
    used as `weight · lr/√in`, bias · lr, then `bias_act`. `precision`: the matmul policy
    (`lace_jax.models.precision`; float32 result)."""

    features: int
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        lr = self.lr_multiplier
        weight = self.param("weight", lambda k, s: jax.random.normal(k, s, jnp.float32) / lr, (fan_in, self.features))
        bias = self.param("bias", lambda k, s: jnp.full(s, self.bias_init, jnp.float32), (self.features,))
        w = weight * jnp.float32(lr / np.sqrt(fan_in))
        b = bias * jnp.float32(lr) if lr != 1 else bias
        y = _policy.matmul(x, w, self.precision)
        if self.activation == "linear":
            return y + b
        return ops.bias_act(y, b, act=self.activation)


class MappingNetwork(nn.Module):
    """z [B, z_dim] (+ c [B, c_dim]) → ws [B, num_ws, w_dim], with truncation towards `buffers/w_avg`.
    `precision`: the matmul policy of the fc layers (the label embedding stays float32)."""

    config: StyleGAN2Config
    precision: str = "highest"

    @nn.compact
    def __call__(self, z: jax.Array | None, c: jax.Array | None = None, truncation_psi: float | jax.Array = 1.0,
                 truncation_cutoff: int | None = None, broadcast: bool = True) -> jax.Array:
        cfg = self.config
        embed_features = cfg.embed_features or cfg.w_dim
        layer_features = cfg.layer_features or cfg.w_dim
        parts = []
        if cfg.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != cfg.z_dim:
                raise ValueError(f"mapping: z must have shape [B, {cfg.z_dim}], got "
                                 f"{None if z is None else z.shape}")
            parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
        if cfg.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != cfg.c_dim:
                raise ValueError(f"mapping: c must have shape [B, {cfg.c_dim}] (one-hot labels), got "
                                 f"{None if c is None else c.shape}")
            y = FullyConnected(embed_features, name="embed")(c.astype(jnp.float32))
            self.sow("intermediates", "embed_out", y)
            parts.append(ops.normalize_2nd_moment(y))
        x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
        for idx in range(cfg.mapping_layers):
            out = cfg.w_dim if idx == cfg.mapping_layers - 1 else layer_features
            x = FullyConnected(out, activation=cfg.mapping_activation, lr_multiplier=cfg.lr_multiplier,
                               precision=self.precision, name=f"fc{idx}")(x)
            self.sow("intermediates", f"fc{idx}_out", x)
        w_avg = self.variable("buffers", "w_avg", lambda: jnp.zeros((cfg.w_dim,), jnp.float32))
        if not broadcast:
            return truncate(x, w_avg.value, truncation_psi, variant=cfg.variant)
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], cfg.num_ws, cfg.w_dim))
        return truncate(ws, w_avg.value, truncation_psi, truncation_cutoff, variant=cfg.variant)


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (optionally 2× up-sampling), noise, bias, activation, clamp (ada `SynthesisLayer`,
    rosinality `StyledConv`). NHWC in and out."""

    out_channels: int
    resolution: int
    up: int = 1
    use_noise: bool = True
    activation: str = "lrelu"
    conv_clamp: float | None = None
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    kernel_size: int = 3
    fused: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str = "const", random_noise: jax.Array | None = None,
                 gain: float = 1.0) -> jax.Array:
        """`random_noise`: the N(0, 1) image [B, R, R, 1] used in noise_mode 'random' (scaled by noise_strength)."""
        cin = x.shape[-1]
        k = self.kernel_size
        if x.shape[1] != self.resolution // self.up:
            raise ValueError(f"SynthesisLayer {self.name}: input resolution {x.shape[1]}, expected "
                             f"{self.resolution // self.up}")
        styles = FullyConnected(cin, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        weight = self.param("weight", nn.initializers.normal(1.0), (k, k, cin, self.out_channels), jnp.float32)
        noise = None
        if self.use_noise:
            res = self.resolution
            noise_const = self.variable("buffers", "noise_const",
                                        lambda: jax.random.normal(self.make_rng("params"), (res, res), jnp.float32))
            strength = self.param("noise_strength", nn.initializers.zeros, (), jnp.float32)
            if noise_mode == "random":
                if random_noise is None or random_noise.shape != (x.shape[0], res, res, 1):
                    raise ValueError(f"SynthesisLayer {self.name}: noise_mode='random' needs random_noise of shape "
                                     f"{(x.shape[0], res, res, 1)}, got "
                                     f"{None if random_noise is None else random_noise.shape}")
                noise = random_noise.astype(jnp.float32) * strength
            elif noise_mode == "const":
                noise = (noise_const.value * strength)[None, :, :, None]
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,), jnp.float32)
        f = ops.setup_filter(self.resample_filter) if self.up > 1 else None
        y = ops.modulated_conv2d(x.astype(self.dtype), weight, styles, noise=noise, up=self.up, padding=k // 2,
                                 resample_filter=f, flip_weight=(self.up == 1), fused=self.fused,
                                 precision=_precision(self.dtype))
        act_gain = ops._ACT_DEF_GAIN[self.activation] * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(y, bias, act=self.activation, gain=act_gain, clamp=clamp)


class ToRGB(nn.Module):
    """1×1 modulated conv without demodulation, style gain 1/√in, bias, clamp (ada `ToRGBLayer`)."""

    out_channels: int
    conv_clamp: float | None = None
    fused: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        styles = FullyConnected(cin, bias_init=1.0, name="affine")(w.astype(jnp.float32))
        styles = styles * jnp.float32(1 / np.sqrt(cin))
        weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, cin, self.out_channels), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.out_channels,), jnp.float32)
        y = ops.modulated_conv2d(x.astype(self.dtype), weight, styles, demodulate=False, fused=self.fused,
                                 precision=_precision(self.dtype))
        return ops.bias_act(y, bias, clamp=self.conv_clamp)


class SkipConv(nn.Module):
    """ResNet shortcut: 1×1 conv with 2× FIR up-sampling, no bias, weight gain 1/√in, output gain √½."""

    out_channels: int
    resample_filter: tuple[float, ...] = (1, 3, 3, 1)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        weight = self.param("weight", nn.initializers.normal(1.0), (1, 1, cin, self.out_channels), jnp.float32)
        w = (weight * jnp.float32(1 / np.sqrt(cin))).astype(self.dtype)
        y = ops.conv2d_resample(x.astype(self.dtype), w, ops.setup_filter(self.resample_filter), up=2,
                                flip_weight=False, precision=_precision(self.dtype))
        return ops.bias_act(y, None, gain=float(np.sqrt(0.5)))


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 ↑2) → conv1 → (torgb, + up-sampled img for 'skip'). NHWC."""

    config: StyleGAN2Config
    resolution: int

    @nn.compact
    def __call__(self, x: jax.Array | None, img: jax.Array | None, ws: jax.Array, noise_mode: str,
                 noises: Sequence[jax.Array | None]) -> tuple[jax.Array, jax.Array | None]:
        """`noises`: this block's random-noise images (one per conv layer, or Nones)."""
        cfg = self.config
        res = self.resolution
        ch = cfg.channels_dict
        cout = ch[res]
        dt = cfg.compute_dtype
        is_last = res == cfg.img_resolution
        arch = cfg.architecture
        layer = dict(use_noise=cfg.use_noise, activation=cfg.activation, conv_clamp=cfg.conv_clamp,
                     resample_filter=cfg.resample_filter, fused=cfg.fused_modconv, dtype=dt)
        wi = 0
        if res == 4:
            const = self.param("const", nn.initializers.normal(1.0), (4, 4, cout), jnp.float32)
            x = jnp.broadcast_to(const[None].astype(dt), (ws.shape[0], 4, 4, cout))
            x = SynthesisLayer(cout, res, name="conv1", **layer)(x, ws[:, wi], noise_mode, noises[0])
            wi += 1
        else:
            x = x.astype(dt)
            if arch == "resnet":
                y = SkipConv(cout, cfg.resample_filter, dtype=dt, name="skip")(x)
                x = SynthesisLayer(cout, res, up=2, name="conv0", **layer)(x, ws[:, wi], noise_mode, noises[0])
                x = SynthesisLayer(cout, res, name="conv1", **layer)(x, ws[:, wi + 1], noise_mode, noises[1],
                                                                     gain=float(np.sqrt(0.5)))
                x = y + x
            else:
                x = SynthesisLayer(cout, res, up=2, name="conv0", **layer)(x, ws[:, wi], noise_mode, noises[0])
                x = SynthesisLayer(cout, res, name="conv1", **layer)(x, ws[:, wi + 1], noise_mode, noises[1])
            wi += 2
        if img is not None:
            img = ops.upsample2d(img, ops.setup_filter(cfg.resample_filter))
        if is_last or arch == "skip":
            y = ToRGB(cfg.img_channels, conv_clamp=cfg.conv_clamp, fused=cfg.fused_modconv, dtype=dt,
                      name="torgb")(x, ws[:, wi])
            y = y.astype(jnp.float32)
            img = y if img is None else img + y
        self.sow("intermediates", "x", x)
        if img is not None:
            self.sow("intermediates", "img", img)
        return x, img


def _random_noises(cfg: StyleGAN2Config, key: jax.Array, batch: int) -> dict[int, tuple[jax.Array, ...]]:
    """N(0, 1) noise images for every conv layer, `{res: (conv0?, conv1)}` each [B, R, R, 1], from ONE normal draw
    of all of them (one RNG kernel instead of one per layer: much faster to compile)."""
    layers = [(res, 1 if res == 4 else 2) for res in cfg.block_resolutions]
    total = sum(n * res * res for res, n in layers)
    flat = jax.random.normal(key, (batch, total), jnp.float32)
    out, off = {}, 0
    for res, n in layers:
        maps = []
        for _ in range(n):
            maps.append(flat[:, off:off + res * res].reshape(batch, res, res, 1))
            off += res * res
        out[res] = tuple(maps)
    return out


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] → NHWC image [B, R, R, img_channels] (float32)."""

    config: StyleGAN2Config

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "const", key: jax.Array | None = None) -> jax.Array:
        cfg = self.config
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"synthesis: noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise_mode == "random" and key is None and cfg.use_noise:
            raise ValueError("synthesis: noise_mode='random' needs an explicit PRNG key")
        if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ValueError(f"synthesis: ws must have shape [B, {cfg.num_ws}, {cfg.w_dim}], got {ws.shape}")
        ws = ws.astype(jnp.float32)
        noises = _random_noises(cfg, key, ws.shape[0]) if (noise_mode == "random" and cfg.use_noise) else {}
        x = img = None
        w_idx = 0
        for res in cfg.block_resolutions:
            n_conv = 1 if res == 4 else 2
            n_torgb = 1 if (res == cfg.img_resolution or cfg.architecture == "skip") else 0
            block_ws = ws[:, w_idx:w_idx + n_conv + n_torgb]
            x, img = SynthesisBlock(cfg, res, name=f"b{res}")(x, img, block_ws, noise_mode,
                                                              noises.get(res, (None, None)))
            w_idx += n_conv
        return img


class Generator(nn.Module):
    """G = synthesis ∘ mapping. Submodules `mapping` and `synthesis` (see the layout in the module docstring)."""

    config: StyleGAN2Config

    def setup(self):
        self.mapping = MappingNetwork(self.config)
        self.synthesis = SynthesisNetwork(self.config)

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float | jax.Array = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const",
                 key: jax.Array | None = None) -> jax.Array:
        """NHWC image [B, R, R, img_channels]."""
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode, key)


# --------------------------------------------------------------------------------------------------------------
# Pure functional API (cfg static, variables a pytree): what samplers, energies and trainers call.
# `mapping`, `mapping_w`, `synthesis` and `generate` are jitted where they stand (the config and the other
# switches static, arrays and ψ traced): called eagerly, a Flax module otherwise runs op by op (two 1024-px images
# took ten times as long as the compiled call; docs/performance.md); inside an outer jit they are inlined.

def truncate(ws: jax.Array, w_avg: jax.Array, psi: float | jax.Array = 1.0, cutoff: int | None = None, *,
             variant: str = "ada") -> jax.Array:
    """Truncation towards `w_avg`: `w_avg + ψ(w − w_avg)` on `ws[..., :cutoff, :]` (all layers if cutoff is None;
    `ws` may be [B, w_dim] when cutoff is None). ada rounds as torch.lerp; rosinality as `tl + ψ(w − tl)`.
    `psi` may be traced; ψ = 1 returns `ws` exactly."""
    if isinstance(psi, (int, float)) and psi == 1:
        return ws
    psi = jnp.asarray(psi, jnp.float32)
    if variant == "rosinality":
        t = jnp.where(psi != 1, w_avg + psi * (ws - w_avg), ws)
    else:
        t = ops.lerp(w_avg, ws, psi)
    if cutoff is None:
        return t
    layer = jnp.arange(ws.shape[-2])[:, None]
    return jnp.where(layer < cutoff, t, ws)


def style_mix(ws_a: jax.Array, ws_b: jax.Array, index: int | jax.Array) -> jax.Array:
    """Style mixing: layers `< index` from `ws_a`, the rest from `ws_b` (both [B, num_ws, w_dim]; rosinality's
    `inject_index`, ada's mixing cutoff). `index` may be traced."""
    layer = jnp.arange(ws_a.shape[1])[None, :, None]
    return jnp.where(layer < index, ws_a, ws_b)


def update_w_avg(w_avg: jax.Array, w: jax.Array, beta: float = 0.995) -> jax.Array:
    """Training-time EMA of w as upstream: `lerp(mean_batch(w), w_avg, beta)`; `w` is [B, w_dim]."""
    return ops.lerp(jnp.mean(w, axis=0), w_avg, beta)


def init_rule(path: Sequence[str], config: StyleGAN2Config) -> tuple[str, float]:
    """How the variable at `path` (e.g. `("params", "mapping", "fc0", "weight")`) is initialised, as upstream and as
    the modules' own Flax initialisers do: `("normal", std)` or `("const", value)`."""
    col, name = path[0], path[-1]
    parent = path[-2] if len(path) > 1 else ""
    if col == "buffers":
        return ("normal", 1.0) if name == "noise_const" else ("const", 0.0)  # w_avg starts at 0
    if path[1] == "mapping":
        lr = 1.0 if parent == "embed" else config.lr_multiplier
        return ("normal", 1.0 / lr) if name == "weight" else ("const", 0.0)
    if name in ("weight", "const"):
        return ("normal", 1.0)
    if name == "bias":
        return ("const", 1.0 if parent == "affine" else 0.0)
    if name == "noise_strength":
        return ("const", 0.0)
    raise ValueError(f"init_rule: unknown variable {'/'.join(path)}")


def init(config: StyleGAN2Config, key: jax.Array) -> dict:
    """Random variables `{"params", "buffers"}` with upstream's init (weights N(0,1), mapping weights N(0,1)/lr,
    biases 0, affine biases 1, noise strengths 0, const and noise_const N(0,1), w_avg 0; see `init_rule`), all
    normal leaves from one draw (`ops.init_from_rules`)."""
    return ops.init_from_rules(key, variable_shapes(config), lambda path: init_rule(path, config))


def flax_init(config: StyleGAN2Config, key: jax.Array) -> dict:
    """The same variables through Flax's own `Generator.init` (one RNG stream per parameter; slow to compile).
    Kept to check `init_rule` against the modules' declared initialisers."""
    z = jnp.zeros((1, config.z_dim), jnp.float32)
    c = jnp.zeros((1, config.c_dim), jnp.float32) if config.c_dim > 0 else None
    v = jax.jit(lambda k: Generator(config).init({"params": k}, z, c))(key)
    return {"params": v["params"], "buffers": v["buffers"]}


def variable_shapes(config: StyleGAN2Config) -> dict:
    """The expected variable tree as `jax.ShapeDtypeStruct`s (tracing only, no compile): what converters and `init`
    build against."""
    z = jax.ShapeDtypeStruct((1, config.z_dim), jnp.float32)
    c = jax.ShapeDtypeStruct((1, config.c_dim), jnp.float32) if config.c_dim > 0 else None
    v = jax.eval_shape(lambda k, z, c: Generator(config).init({"params": k}, z, c), jax.random.PRNGKey(0), z, c)
    return {"params": v["params"], "buffers": v["buffers"]}


@functools.partial(jax.jit, static_argnames=("config", "truncation_cutoff"))
def mapping(config: StyleGAN2Config, variables: Mapping, z: jax.Array | None, c: jax.Array | None = None, *,
            truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
    """z [B, z_dim] (+ one-hot c [B, c_dim]) → ws [B, num_ws, w_dim]. `variables` needs only the mapping parts."""
    return Generator(config).apply(_sub(variables, "mapping"), z, c, truncation_psi, truncation_cutoff,
                                   method=lambda m, *a: m.mapping(*a))


@functools.partial(jax.jit, static_argnames=("config", "precision"))
def mapping_w(config: StyleGAN2Config, variables: Mapping, z: jax.Array | None, c: jax.Array | None = None, *,
              truncation_psi: float | jax.Array = 1.0, precision: str = "highest") -> jax.Array:
    """z → a single w [B, w_dim] (no broadcast; truncation on all of it): LACE's `z → w` map; `precision`: the fc
    layers' matmul policy (`lace_jax.models.precision`)."""
    if precision != "highest":
        sub = {col: tree["mapping"] for col, tree in _sub(variables, "mapping").items()}
        return MappingNetwork(config, precision=precision).apply(sub, z, c, truncation_psi, None, False)
    return Generator(config).apply(_sub(variables, "mapping"), z, c, truncation_psi, None, False,
                                   method=lambda m, *a: m.mapping(*a))


@functools.partial(jax.jit, static_argnames=("config", "noise_mode", "return_intermediates"))
def synthesis(config: StyleGAN2Config, variables: Mapping, ws: jax.Array, *, noise_mode: str = "const",
              key: jax.Array | None = None, return_intermediates: bool = False):
    """ws [B, num_ws, w_dim] → NCHW image [B, C, R, R] float32 (nominally [−1, 1]). Noise: 'const' (the stored
    noise images), 'random' (fresh N(0,1) images for every layer and sample, all from one draw with `key`), 'none'.
    With `return_intermediates`, also a dict `{"b4": {"x": NHWC, "img": NHWC}, ...}` of block outputs."""
    def run(m, ws):
        return m.synthesis(ws, noise_mode, key)
    sub = _sub(variables, "synthesis")
    if return_intermediates:
        img, state = Generator(config).apply(sub, ws, method=run, mutable=["intermediates"])
        inter = state["intermediates"]["synthesis"]
        blocks = {name: {k: v[0] for k, v in d.items()} for name, d in inter.items()}
        return to_nchw(img), blocks
    return to_nchw(Generator(config).apply(sub, ws, method=run))


@functools.partial(jax.jit, static_argnames=("config", "noise_mode", "truncation_cutoff"))
def generate(config: StyleGAN2Config, variables: Mapping, z: jax.Array, c: jax.Array | None = None, *,
             truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None,
             noise_mode: str = "const", key: jax.Array | None = None, z2: jax.Array | None = None,
             inject_index: int | jax.Array | None = None) -> jax.Array:
    """G(z, c) → NCHW image: `synthesis(mapping(z, c, ψ, cutoff))`. With a second latent `z2` and `inject_index`
    (style mixing, as rosinality's `g_ema([z, z2], inject_index=i)`): layers `< i` from z, the rest from z2, both
    mapped and truncated the same way."""
    ws = mapping(config, variables, z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    if z2 is not None:
        if inject_index is None:
            raise ValueError("generate: style mixing with z2 needs an explicit inject_index")
        ws2 = mapping(config, variables, z2, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        ws = style_mix(ws, ws2, inject_index)
    return synthesis(config, variables, ws, noise_mode=noise_mode, key=key)



def to_nchw(img: jax.Array) -> jax.Array:
    return jnp.transpose(img, (0, 3, 1, 2))


def to_nhwc(img: jax.Array) -> jax.Array:
    return jnp.transpose(img, (0, 2, 3, 1))


def estimate_w_avg(cfg: StyleGAN2Config, variables: Mapping, key: jax.Array, num: int = 4096) -> jax.Array:
    """Mean of the untruncated mapping output over `num` latents z ~ N(0, I) from `key` (class 0 for a
    conditional generator): the truncation centre, for weights that carry none or a stale one."""
    z = jax.random.normal(key, (num, cfg.z_dim), jnp.float32)
    c = None if cfg.c_dim == 0 else jax.nn.one_hot(jnp.zeros(num, jnp.int32), cfg.c_dim)
    return jnp.mean(mapping_w(cfg, variables, z, c), axis=0)


def to_uint8(img: jax.Array | np.ndarray) -> np.ndarray:
    """NCHW float image → NHWC uint8 as upstream `generate.py`: `clip(x·127.5 + 128, 0, 255)`, then truncate."""
    x = np.asarray(img, dtype=np.float32)
    if x.ndim != 4:
        raise ValueError(f"to_uint8: expected NCHW [B, C, H, W], got shape {x.shape}")
    x = np.clip(np.transpose(x, (0, 2, 3, 1)) * np.float32(127.5) + np.float32(128), 0, 255)
    return x.astype(np.uint8)


def _sub(variables: Mapping, part: str) -> dict:
    """The `part` ('mapping' | 'synthesis') of every collection, re-rooted for `Generator.apply`."""
    out = {}
    for col, tree in variables.items():
        if col in ("params", "buffers") and part in tree:
            out[col] = {part: tree[part]}
    if "params" not in out:
        raise ValueError(f"variables have no params/{part}: got collections {list(variables)} with "
                         f"{ {c: list(t) for c, t in variables.items()} }")
    return out
