"""Pure-`lax` StyleGAN2 ops, NHWC: FIR resampling, modulated convolution, bias + activation, normalisation.

Semantics follow stylegan2-ada-pytorch's `torch_utils/ops` (upfirdn2d, conv2d_resample, bias_act) and
`training/networks.py` (modulated_conv2d, normalize_2nd_moment), transposed to NHWC activations and HWIO weights
(`w_hwio = w_oihw.transpose(2, 3, 1, 0)`). Filters are architecture constants, so they are numpy arrays (static
under jit), never traced values.

Modulated convolution has two execution paths with the same maths (`fused`):
* non-fused (default): scale the activations by the styles, run ONE ordinary convolution with the shared weight,
  scale the output by the demodulation coefficients. On CPU it is much faster than the grouped convolution at
  batch > 1 (`benchmarks/generator.py`, docs/performance.md); shared-weight convolutions are also what cuDNN runs
  best on GPU.
* fused: per-sample weights and one grouped convolution (`feature_group_count = batch`), exactly what upstream runs
  in `eval()` mode. Differences between the two are float32 rounding (≈1e-6 relative).
The 2x up-sampling convolution (upstream: a stride-2 transposed convolution, then the FIR filter) is computed
polyphase (`_conv_zero_inserted`): one small convolution per output phase, no multiply on an inserted zero; ~3x
faster than `lhs_dilation` on CPU.
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = int | Sequence[int]

# Default gains and slopes of the activations (stylegan2-ada `bias_act.activation_funcs`).
_ACT_DEF_GAIN = {
    "linear": 1.0,
    "relu": float(np.sqrt(2.0)),
    "lrelu": float(np.sqrt(2.0)),
    "tanh": 1.0,
    "sigmoid": 1.0,
}


def setup_filter(f: Sequence[float] | np.ndarray = (1, 3, 3, 1), *, normalize: bool = True,
                 separable: bool = False, gain: float = 1.0) -> np.ndarray:
    """A FIR filter as upstream `upfirdn2d.setup_filter`: 1-D taps → 2-D outer product (unless `separable`),
    divided by its sum (if `normalize`), times `gain ** (ndim / 2)`. Returns float32 numpy."""
    f = np.asarray(f, dtype=np.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.size == 0:
        raise ValueError(f"setup_filter: filter must be 1-D or 2-D and non-empty, got shape {f.shape}")
    if f.ndim == 1 and not separable:
        f = np.outer(f, f)
    if normalize:
        f = f / f.sum()
    f = f * np.float32(gain ** (f.ndim / 2))
    return f.astype(np.float32)


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """`p`, `[px, py]` or `[px0, px1, py0, py1]` → (px0, px1, py0, py1), as upstream."""
    if isinstance(padding, (int, np.integer)):
        return int(padding), int(padding), int(padding), int(padding)
    p = [int(v) for v in padding]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    if len(p) == 4:
        return p[0], p[1], p[2], p[3]
    raise ValueError(f"padding must be an int, [px, py] or [px0, px1, py0, py1], got {padding!r}")


def _fir_valid(x: jax.Array, f: np.ndarray, down: int) -> jax.Array:
    """Correlate every channel of NHWC `x` with the 2-D (or separable 1-D) numpy filter `f`, 'valid', stride `down`.

    Written as a sum of shifted, strided slices: the filter is a small static constant, so XLA fuses this into one
    elementwise loop (faster than a depthwise convolution on CPU, and exact in any dtype)."""
    dt = x.dtype

    def taps_1d(v: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
        n_out = (v.shape[axis] - len(taps)) // down + 1
        if n_out <= 0:
            raise ValueError(f"upfirdn2d: input of size {v.shape[axis]} too small for a {len(taps)}-tap filter")
        acc = None
        for i, t in enumerate(taps):
            if t == 0:
                continue
            sl = lax.slice_in_dim(v, i, i + (n_out - 1) * down + 1, stride=down, axis=axis)
            term = sl * jnp.asarray(t, dt)
            acc = term if acc is None else acc + term
        if acc is None:
            shape = list(v.shape)
            shape[axis] = n_out
            acc = jnp.zeros(shape, dt)
        return acc

    if f.ndim == 1:
        return taps_1d(taps_1d(x, f, 2), f, 1)
    fh, fw = f.shape
    B, H, W, C = x.shape
    ho, wo = (H - fh) // down + 1, (W - fw) // down + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"upfirdn2d: input {H}x{W} too small for a {fh}x{fw} filter")
    acc = None
    for i in range(fh):
        for j in range(fw):
            t = f[i, j]
            if t == 0:
                continue
            sl = lax.slice(x, (0, i, j, 0), (B, i + (ho - 1) * down + 1, j + (wo - 1) * down + 1, C),
                           (1, down, down, 1))
            term = sl * jnp.asarray(t, dt)
            acc = term if acc is None else acc + term
    if acc is None:
        acc = jnp.zeros((B, ho, wo, C), dt)
    return acc


def upfirdn2d(x: jax.Array, f: np.ndarray | None, *, up: int = 1, down: int = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    """Upsample (zero insertion, `up-1` zeros after every sample), pad/crop, FIR-filter, downsample (keep every
    `down`-th sample), as upstream `upfirdn2d` on NHWC input. `f`: 2-D filter (or 1-D separable taps) from
    `setup_filter`, or None for the identity [[1]]. Negative padding crops."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: expected NHWC input, got shape {x.shape}")
    if up < 1 or down < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    f = np.ones((1, 1), np.float32) if f is None else np.asarray(f, np.float32)
    px0, px1, py0, py1 = _parse_padding(padding)
    # Zero insertion and pad/crop in one lax.pad (negative padding crops).
    cfg = [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)]
    x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    f = f * np.float32(gain ** (f.ndim / 2))
    if not flip_filter:  # upstream convolves (flipped filter) unless flip_filter
        f = f[::-1] if f.ndim == 1 else f[::-1, ::-1]
    return _fir_valid(x, _separate(np.ascontiguousarray(f)), down)


def _separate(f: np.ndarray) -> np.ndarray:
    """A rank-1 2-D filter → its 1-D taps (applied along H then W; half the multiply-adds, fewer ops to compile),
    else `f` unchanged. Only exact outer products of one 1-D filter are separated (rounding ≤ 1 ulp per product)."""
    if f.ndim != 2 or f.shape[0] != f.shape[1]:
        return f
    col = f.sum(axis=1, dtype=np.float64)
    total = col.sum()
    if total == 0:
        return f
    taps = col / np.sqrt(total) if total > 0 else None
    if taps is None or not np.allclose(np.outer(taps, taps), f, rtol=1e-6, atol=0):
        return f
    return taps.astype(np.float32)


def upsample2d(x: jax.Array, f: np.ndarray, *, up: int = 2, padding: Padding = 0, gain: float = 1.0) -> jax.Array:
    """Upsample by `up` with FIR filter `f` (output size `in·up` for zero padding), as upstream `upsample2d`."""
    fw = f.shape[-1]
    fh = f.shape[0]
    px0, px1, py0, py1 = _parse_padding(padding)
    p = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: jax.Array, f: np.ndarray, *, down: int = 2, padding: Padding = 0,
                 gain: float = 1.0) -> jax.Array:
    """Downsample by `down` with FIR filter `f` (output size `in/down` for zero padding), as upstream."""
    fw = f.shape[-1]
    fh = f.shape[0]
    px0, px1, py0, py1 = _parse_padding(padding)
    p = [px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)


def _conv(x: jax.Array, w: jax.Array, *, stride: int = 1, padding: tuple[tuple[int, int], tuple[int, int]],
          lhs_dilation: int = 1, groups: int = 1, precision: lax.PrecisionLike = None) -> jax.Array:
    """Plain NHWC × HWIO correlation (what torch's conv2d computes)."""
    return lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=padding, lhs_dilation=(lhs_dilation, lhs_dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups, precision=precision)


def _phase_taps(k: int, s: int, pad: int, n_in: int) -> list[tuple[list[int], int, int]]:
    """Polyphase plan along one axis for `out[p] = Σ_j u[p + j − pad] K[j]`, `u` = input zero-inserted by `s`
    (u[s·y] = x[y]), output length (n_in − 1)s + 1 + 2·pad − k + 1. Phase r (p = s·m + r) only meets the taps
    j ≡ pad − r (mod s), which read x[m + d0 + t] for t = 0, 1, ...; returns per phase (taps, d0, length)."""
    n_out = (n_in - 1) * s + 2 * pad - k + 2
    plan = []
    for r in range(s):
        taps = [j for j in range(k) if (r + j - pad) % s == 0]
        d0 = (r + taps[0] - pad) // s if taps else 0
        plan.append((taps, d0, max(0, -(-(n_out - r) // s))))
    return plan


def _conv_zero_inserted(x: jax.Array, w: jax.Array, s: int, pad: tuple[int, int], *, groups: int = 1,
                        precision: lax.PrecisionLike = None) -> jax.Array:
    """Correlation of the `s`-fold zero-inserted `x`, padded by `pad` = (py, px) on both sides, with HWIO `w`
    (= torch conv_transpose2d). Computed polyphase: one small convolution per output phase on the input grid, then
    interleaved, so no multiply touches an inserted zero (faster than `lhs_dilation` on CPU; same terms, so equal
    up to summation order)."""
    kh, kw = int(w.shape[0]), int(w.shape[1])
    B, H, W = x.shape[0], x.shape[1], x.shape[2]
    plan_y, plan_x = _phase_taps(kh, s, pad[0], H), _phase_taps(kw, s, pad[1], W)
    n_y = (H - 1) * s + 2 * pad[0] - kh + 2
    n_x = (W - 1) * s + 2 * pad[1] - kw + 2
    my, mx = max(p[2] for p in plan_y), max(p[2] for p in plan_x)
    cout = int(w.shape[3])
    rows = []
    for ty, dy, ly in plan_y:
        cols = []
        for tx, dx, lx in plan_x:
            if not ty or not tx or ly == 0 or lx == 0:
                cols.append(jnp.zeros((B, my, mx, cout), x.dtype))
                continue
            kern = w[np.asarray(ty)][:, np.asarray(tx)]
            # x[m + d0 + t] for m < length: pad/crop x so that a 'valid' correlation starts at d0.
            cfg = [(0, 0, 0), (-dy, ly - 1 + dy + len(ty) - 1 - (H - 1), 0),
                   (-dx, lx - 1 + dx + len(tx) - 1 - (W - 1), 0), (0, 0, 0)]
            xs = lax.pad(x, jnp.zeros((), x.dtype), cfg)
            y = _conv(xs, kern, padding=((0, 0), (0, 0)), groups=groups, precision=precision)
            cols.append(jnp.pad(y, ((0, 0), (0, my - ly), (0, mx - lx), (0, 0))))
        rows.append(jnp.stack(cols, axis=3))  # [B, my, mx, s, C]
    out = jnp.stack(rows, axis=2)  # [B, my, s, mx, s, C]
    out = out.reshape(B, my * s, mx * s, cout)
    return out[:, :n_y, :n_x]


def conv2d_resample(x: jax.Array, w: jax.Array, f: np.ndarray | None = None, *, up: int = 1, down: int = 1,
                    padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    precision: lax.PrecisionLike = None) -> jax.Array:
    """2-D convolution with optional FIR up/downsampling, as upstream `conv2d_resample` (same padding arithmetic and
    the same order of operations). NHWC `x`, HWIO `w` (I = in-channels per group). `flip_weight=True` is
    correlation (torch conv2d); False is true convolution (upstream uses it for `up > 1` layers). `precision` is
    passed to the convolution (use `lax.Precision.HIGHEST` for float32 accuracy on GPUs with TF32)."""
    kh, kw = int(w.shape[0]), int(w.shape[1])
    if (up > 1 or down > 1) and f is None:
        raise ValueError("conv2d_resample: a resampling filter f is required when up > 1 or down > 1")
    fh, fw = (1, 1) if f is None else (f.shape[0], f.shape[-1])
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    if not flip_weight:
        w = w[::-1, ::-1]

    # 1x1 kernel, downsampling only: filter/downsample first, then convolve.
    if kh == 1 and kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=(px0, px1, py0, py1))
        return _conv(x, w, padding=((0, 0), (0, 0)), groups=groups, precision=precision)
    # 1x1 kernel, upsampling only: convolve first, then upsample.
    if kh == 1 and kw == 1 and up > 1 and down == 1:
        x = _conv(x, w, padding=((0, 0), (0, 0)), groups=groups, precision=precision)
        return upfirdn2d(x, f, up=up, padding=(px0, px1, py0, py1), gain=up * up)
    # Downsampling only: FIR-pad, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=(px0, px1, py0, py1))
        return _conv(x, w, stride=down, padding=((0, 0), (0, 0)), groups=groups, precision=precision)
    # Upsampling: transposed strided convolution (= zero insertion + true convolution), then the FIR filter.
    if up > 1:
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        # Upstream runs torch conv_transpose2d(stride=up, padding=pt) with the kernel flipped iff flip_weight; that
        # equals a correlation of the zero-inserted input, padded by k-1-pt, with `w` as prepared above.
        x = _conv_zero_inserted(x, w, up, (kh - 1 - pyt, kw - 1 - pxt), groups=groups, precision=precision)
        x = upfirdn2d(x, f, padding=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
        if down > 1:
            x = upfirdn2d(x, f, down=down)
        return x
    # No resampling.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=((py0, py0), (px0, px0)), groups=groups, precision=precision)
    x = upfirdn2d(x, None, padding=(px0, px1, py0, py1))
    return _conv(x, w, padding=((0, 0), (0, 0)), groups=groups, precision=precision)


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    """`x · rsqrt(mean(x²) + eps)` along `axis` (upstream `normalize_2nd_moment`, rosinality `PixelNorm`)."""
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


def bias_act(x: jax.Array, b: jax.Array | None = None, *, act: str = "linear", alpha: float = 0.2,
             gain: float | None = None, clamp: float | None = None) -> jax.Array:
    """Add bias `b` (last axis), apply `act`, multiply by `gain` (default: the activation's own gain, √2 for
    (l)relu), clamp to ±`clamp` — in that order, as upstream `bias_act`."""
    if act not in _ACT_DEF_GAIN:
        raise ValueError(f"bias_act: unknown activation {act!r}; expected one of {sorted(_ACT_DEF_GAIN)}")
    if b is not None:
        x = x + b.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * jnp.asarray(alpha, x.dtype))
    elif act == "relu":
        x = jnp.maximum(x, 0)
    elif act == "tanh":
        x = jnp.tanh(x)
    elif act == "sigmoid":
        x = jax.nn.sigmoid(x)
    gain = _ACT_DEF_GAIN[act] if gain is None else float(gain)
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, *, noise: jax.Array | None = None,
                     up: int = 1, padding: int = 0, resample_filter: np.ndarray | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused: bool = False,
                     precision: lax.PrecisionLike = None) -> jax.Array:
    """StyleGAN2 modulated convolution: per-sample weights `weight · styles` (input channels), optionally
    demodulated (`rsqrt(Σ w² + 1e-8)` per output channel), then `noise` added. NHWC `x[B,H,W,I]`, HWIO
    `weight[kh,kw,I,O]`, `styles[B,I]`. Styles and demodulation are computed in float32; the convolution runs in
    `x.dtype`. `fused` picks the grouped-convolution path (see module docstring)."""
    B = x.shape[0]
    kh, kw, cin, cout = weight.shape
    if x.shape[-1] != cin or styles.shape != (B, cin):
        raise ValueError(f"modulated_conv2d: x {x.shape} / styles {styles.shape} do not match weight {weight.shape}")
    cdt = x.dtype
    w = weight.astype(jnp.float32)[None] * styles.astype(jnp.float32)[:, None, None, :, None]  # [B,kh,kw,I,O]
    dcoefs = lax.rsqrt(jnp.sum(jnp.square(w), axis=(1, 2, 3)) + 1e-8) if demodulate else None  # [B,O]
    if fused:
        if demodulate:
            w = w * dcoefs[:, None, None, None, :]
        H, W = x.shape[1], x.shape[2]
        xg = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, H, W, B * cin)
        wg = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, cin, B * cout).astype(cdt)
        y = conv2d_resample(xg, wg, resample_filter, up=up, padding=padding, groups=B, flip_weight=flip_weight,
                            precision=precision)
        y = jnp.transpose(y.reshape(y.shape[1], y.shape[2], B, cout), (2, 0, 1, 3))
        if noise is not None:
            y = y + noise.astype(cdt)
        return y
    xs = x * styles.astype(cdt)[:, None, None, :]
    y = conv2d_resample(xs, weight.astype(cdt), resample_filter, up=up, padding=padding, flip_weight=flip_weight,
                        precision=precision)
    if demodulate:
        y = y * dcoefs.astype(cdt)[:, None, None, :]
    if noise is not None:
        y = y + noise.astype(cdt)
    return y


def lerp(start: jax.Array, end: jax.Array, weight: jax.Array | float) -> jax.Array:
    """`start + weight·(end − start)` with torch.lerp's rounding (it uses `end − (end − start)·(1 − weight)` for
    weight ≥ 0.5, so weight = 1 returns `end` exactly). `weight` may be traced."""
    weight = jnp.asarray(weight, jnp.result_type(start, end))
    diff = end - start
    return jnp.where(weight < 0.5, start + weight * diff, end - diff * (1 - weight))


def init_from_rules(key: jax.Array, shapes, rule: Callable[[tuple[str, ...]], tuple[str, float]]):
    """Variables for a tree of `jax.ShapeDtypeStruct`s: `rule(path names)` gives `("normal", std)` or
    `("const", value)`. All normal leaves come from ONE `jax.random.normal(key, [total])` draw split in tree order:
    a Flax `init` compiles one threefry kernel per parameter (and runs the forward pass op by op), which is slow
    on CPU; one draw compiles one kernel."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    rules = [rule(tuple(str(getattr(k, "key", k)) for k in path)) for path, _ in flat]
    sizes = [int(np.prod(leaf.shape)) if kind == "normal" else 0 for (_, leaf), (kind, _) in zip(flat, rules)]
    draws = np.asarray(jax.random.normal(key, (max(sum(sizes), 1),), jnp.float32))
    out, off = [], 0
    for (_, leaf), (kind, val), n in zip(flat, rules, sizes):
        if kind == "normal":
            out.append(jnp.asarray(draws[off:off + n].reshape(leaf.shape) * np.float32(val)))
            off += n
        else:
            out.append(jnp.full(leaf.shape, val, jnp.float32))
    return jax.tree_util.tree_unflatten(treedef, out)
