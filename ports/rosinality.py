"""rosinality/stylegan2-pytorch `Generator` (`g_ema`) weights → `lace_jax.models.stylegan2` variables. No torch.

The architecture is read from the tensor shapes (style_dim, n_mlp, size, and the channel table, which users and
our fixture customise), so only the runtime constants that leave no trace in the weights are arguments
(`lr_mlp`, `blur_kernel`). Key mapping onto the common layout (see `lace_jax/models/stylegan2.py`):

    style.{i+1}.{weight,bias}                 → params/mapping/fc{i}            (style.0 is PixelNorm)
    input.input [1, C, 4, 4]                  → params/synthesis/b4/const [4, 4, C]
    conv1.* / to_rgb1.*                       → b4/conv1, b4/torgb
    convs.{2k}.*, convs.{2k+1}.*, to_rgbs.{k}.*  → b{2^(k+3)}/conv0, conv1, torgb
    *.conv.weight [1, O, I, k, k]             → weight [k, k, I, O];  *.conv.modulation → affine
    *.noise.weight [1]                        → noise_strength [];    *.activate.bias → bias
    to_rgb*.bias [1, 3, 1, 1]                 → torgb/bias [3]
    noises.noise_{j} [1, 1, R, R]             → buffers/.../noise_const [R, R]   (j = 0 → b4/conv1, then 2 per block)
    latent_avg                                → buffers/mapping/w_avg          (the truncation latent)

`blur.kernel` / `upsample.kernel` buffers are checked against the FIR filter, not copied.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from lace_jax.models import ops
from lace_jax.models.stylegan2 import StyleGAN2Config, estimate_w_avg, variable_shapes


class Loaded(NamedTuple):
    config: StyleGAN2Config
    variables: dict
    skipped: tuple[str, ...]   # top-level checkpoint entries not used (e.g. 'g', 'd', 'g_optim', 'args')
    notes: tuple[str, ...]     # e.g. how w_avg was obtained
    source: str


def _shape(sd: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"rosinality state dict: missing key {key!r}")
    return tuple(np.shape(sd[key]))


def infer_config(state_dict: Mapping[str, np.ndarray], *, size: int | None = None, lr_mlp: float = 0.01,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), **overrides) -> StyleGAN2Config:
    """The `StyleGAN2Config` of a rosinality `g_ema` state dict, read from its shapes."""
    sd = state_dict
    w_shape = _shape(sd, "style.1.weight")
    style_dim = w_shape[1]
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in sd:
        n_rgbs += 1
    inferred = 2 ** (n_rgbs + 2)
    if size is not None and int(size) != inferred:
        raise ValueError(f"rosinality state dict: size={size} given, but the weights have {n_rgbs} to_rgbs "
                         f"layers, i.e. size {inferred}")
    channels = {4: _shape(sd, "input.input")[1]}
    for k in range(n_rgbs):
        channels[2 ** (k + 3)] = _shape(sd, f"convs.{2 * k}.conv.weight")[1]
    img_channels = _shape(sd, "to_rgb1.conv.weight")[1]
    kw: dict[str, Any] = dict(z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=inferred,
                              img_channels=img_channels, mapping_layers=n_mlp, lr_multiplier=float(lr_mlp),
                              w_avg_beta=None, channels=channels, architecture="skip", conv_clamp=None,
                              resample_filter=tuple(float(v) for v in blur_kernel), use_noise=True,
                              variant="rosinality")
    kw.update(overrides)
    return StyleGAN2Config(**kw)


def _key_plan(cfg: StyleGAN2Config) -> list[tuple[str, tuple[str, ...], Any]]:
    """(torch key, variable path, numpy transform from torch layout) for every tensor we take."""
    P, B = ("params",), ("buffers",)
    T2 = lambda a: a.T  # noqa: E731  [out, in] → [in, out]
    conv = lambda a: np.transpose(a[0], (2, 3, 1, 0))  # noqa: E731  [1, O, I, k, k] → [k, k, I, O]
    plan = []
    for i in range(cfg.mapping_layers):
        plan += [(f"style.{i + 1}.weight", P + ("mapping", f"fc{i}", "weight"), T2),
                 (f"style.{i + 1}.bias", P + ("mapping", f"fc{i}", "bias"), None)]

    def styled(prefix, path, noise_idx):
        return [(f"{prefix}.conv.weight", path + ("weight",), conv),
                (f"{prefix}.conv.modulation.weight", path + ("affine", "weight"), T2),
                (f"{prefix}.conv.modulation.bias", path + ("affine", "bias"), None),
                (f"{prefix}.noise.weight", path + ("noise_strength",), lambda a: a.reshape(())),
                (f"{prefix}.activate.bias", path + ("bias",), None),
                (f"noises.noise_{noise_idx}", ("buffers",) + path[1:] + ("noise_const",), lambda a: a[0, 0])]

    def torgb(prefix, path):
        return [(f"{prefix}.conv.weight", path + ("weight",), conv),
                (f"{prefix}.conv.modulation.weight", path + ("affine", "weight"), T2),
                (f"{prefix}.conv.modulation.bias", path + ("affine", "bias"), None),
                (f"{prefix}.bias", path + ("bias",), lambda a: a.reshape(-1))]

    s4 = P + ("synthesis", "b4")
    plan.append(("input.input", s4 + ("const",), lambda a: np.transpose(a[0], (1, 2, 0))))
    plan += styled("conv1", s4 + ("conv1",), 0)
    plan += torgb("to_rgb1", s4 + ("torgb",))
    for k, res in enumerate(cfg.block_resolutions[1:]):
        sp = P + ("synthesis", f"b{res}")
        plan += styled(f"convs.{2 * k}", sp + ("conv0",), 2 * k + 1)
        plan += styled(f"convs.{2 * k + 1}", sp + ("conv1",), 2 * k + 2)
        plan += torgb(f"to_rgbs.{k}", sp + ("torgb",))
    return plan


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path, value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


_FILTER_KEY = re.compile(r"^(convs\.\d+\.conv\.blur|to_rgbs\.\d+\.upsample)\.kernel$")


def params_from_state_dict(g_ema_state_dict: Mapping[str, np.ndarray], *, latent_avg: np.ndarray | None = None,
                           size: int | None = None, lr_mlp: float = 0.01,
                           blur_kernel: Sequence[float] = (1, 3, 3, 1), w_avg_samples: int = 4096,
                           w_avg_key: jax.Array | None = None, **config_overrides) -> tuple[StyleGAN2Config, dict]:
    """A rosinality `g_ema.state_dict()` → `(config, variables)`.

    `latent_avg` ([w_dim] or [1, w_dim]) becomes `w_avg`, the truncation centre. Without it, `w_avg` is estimated
    as rosinality's `mean_latent(w_avg_samples)` does: the mean of `style(z)` over z ~ N(0, I) drawn from
    `w_avg_key` (default PRNGKey(0)). Missing keys, wrong shapes (ValueError naming key, expected and found
    shape) and unexpected keys are errors."""
    sd = {str(k): np.asarray(v) for k, v in g_ema_state_dict.items()}
    cfg = infer_config(sd, size=size, lr_mlp=lr_mlp, blur_kernel=blur_kernel, **config_overrides)
    expected = variable_shapes(cfg)
    variables: dict = {}
    used = set()
    for key, path, fn in _key_plan(cfg):
        if key not in sd:
            raise ValueError(f"rosinality state dict: missing key {key!r}")
        arr = sd[key].astype(np.float32)
        out = np.array(fn(arr) if fn is not None else arr, dtype=np.float32, order="C")  # keeps 0-d arrays 0-d
        want = tuple(_get(expected, path).shape)
        if out.shape != want:
            raise ValueError(f"rosinality state dict: key {key!r} has shape {tuple(arr.shape)} which gives "
                             f"{out.shape}, expected {want} for the inferred config {cfg}")
        _set(variables, path, out)
        used.add(key)
    want_filter = ops.setup_filter(cfg.resample_filter) * 4  # rosinality's kernels include the upsampling gain
    for key, arr in sd.items():
        if key in used:
            continue
        if _FILTER_KEY.match(key):
            if arr.shape != want_filter.shape or not np.allclose(arr, want_filter, rtol=0, atol=1e-6):
                raise ValueError(f"rosinality state dict: {key!r} differs from the FIR filter of "
                                 f"blur_kernel={list(cfg.resample_filter)} (×4)")
            continue
        raise ValueError(f"rosinality state dict: unexpected key {key!r} (shape {arr.shape})")
    if latent_avg is not None:
        la = np.asarray(latent_avg, np.float32).reshape(-1)
        if la.shape != (cfg.w_dim,):
            raise ValueError(f"rosinality latent_avg has shape {np.shape(latent_avg)}, expected [{cfg.w_dim}] "
                             f"or [1, {cfg.w_dim}]")
        variables.setdefault("buffers", {}).setdefault("mapping", {})["w_avg"] = la
    else:
        variables.setdefault("buffers", {}).setdefault("mapping", {})["w_avg"] = np.zeros(cfg.w_dim, np.float32)
        key = jax.random.PRNGKey(0) if w_avg_key is None else w_avg_key
        variables["buffers"]["mapping"]["w_avg"] = np.asarray(
            estimate_w_avg(cfg, variables, key, w_avg_samples), np.float32)
    return cfg, variables


def load(path: str | Path, **kwargs) -> Loaded:
    """Load a rosinality checkpoint: `.pt` (`{"g_ema", "latent_avg", ...}` as `convert_weight.py` or `train.py`
    write it; read with the restricted `ports.torch_pickle` reader) or `.npz` (the `g_ema` state dict, optionally
    with a `latent_avg` array). `kwargs` go to `params_from_state_dict`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"rosinality weights not found: {path}")
    skipped: tuple[str, ...] = ()
    if path.suffix in (".pt", ".pth", ".ckpt"):
        from ports import torch_pickle  # restricted reader, imported lazily

        data = torch_pickle.load(path)
        if not isinstance(data, Mapping) or "g_ema" not in data:
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{path}: not a rosinality checkpoint (no 'g_ema' entry; found {found})")
        sd = dict(data["g_ema"])
        latent_avg = data.get("latent_avg")
        skipped = tuple(sorted(str(k) for k in data if k not in ("g_ema", "latent_avg")))
    elif path.suffix == ".npz":
        with np.load(path) as z:
            sd = {k: z[k] for k in z.files if k != "latent_avg"}
            latent_avg = z["latent_avg"] if "latent_avg" in z.files else None
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r} (expected .pt or .npz)")
    if kwargs.get("latent_avg") is not None:
        latent_avg = kwargs.pop("latent_avg")
    kwargs.pop("latent_avg", None)
    cfg, variables = params_from_state_dict(sd, latent_avg=latent_avg, **kwargs)
    notes = ("w_avg = checkpoint latent_avg",) if latent_avg is not None else (
        f"no latent_avg in {path.name}: w_avg estimated as mean of style(z) over "
        f"{kwargs.get('w_avg_samples', 4096)} z (PRNGKey(0) unless w_avg_key given)",)
    return Loaded(cfg, variables, skipped, notes, str(path))
