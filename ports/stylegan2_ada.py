"""stylegan2-ada-pytorch `Generator` weights → `lace_jax.models.stylegan2` variables. No torch needed.

* `params_from_state_dict(state_dict, init_kwargs)`: a `G.state_dict()` (torch names → numpy arrays) plus the
  constructor kwargs (`z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, synthesis_kwargs`) →
  `(StyleGAN2Config, variables)` with `variables = {"params": ..., "buffers": ...}` (layout: see stylegan2.py).
* `load(path)`: `.npz` state dict (kwargs from a `config.json` beside it, or passed in), or a network pickle `.pkl`
  read by `ports.torch_pickle.load` (nothing in it is imported or run): `G_ema` is taken — never `G` — and
  built from `G_ema.init_kwargs` + `G_ema.state_dict()`; the other entries (`G`, `D`, `augment_pipe`, …) are
  reported as skipped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from lace_jax.models import ops
from lace_jax.models.stylegan2 import StyleGAN2Config, variable_shapes

# Constructor kwargs that only affect speed/memory layout upstream, never the float32 maths.
_IGNORED_SYNTHESIS = {"num_fp16_res", "fp16_channels_last", "channels_last"}
_SYNTHESIS_MAP = {"channel_base": "channel_base", "channel_max": "channel_max", "architecture": "architecture",
                  "conv_clamp": "conv_clamp", "resample_filter": "resample_filter", "use_noise": "use_noise",
                  "activation": "activation"}
_MAPPING_MAP = {"num_layers": "mapping_layers", "embed_features": "embed_features",
                "layer_features": "layer_features", "activation": "mapping_activation",
                "lr_multiplier": "lr_multiplier", "w_avg_beta": "w_avg_beta"}


class Loaded(NamedTuple):
    config: StyleGAN2Config
    variables: dict
    skipped: tuple[str, ...]   # top-level pickle entries not used (e.g. 'G', 'D', 'augment_pipe')
    source: str


def config_from_init_kwargs(init_kwargs: Mapping[str, Any], **overrides) -> StyleGAN2Config:
    """Upstream `Generator(**init_kwargs)` → `StyleGAN2Config`. Unknown kwargs that would change the maths raise
    ValueError; `overrides` (e.g. `dtype='bfloat16'`, `fused_modconv=True`) are applied last."""
    kw = dict(init_kwargs)
    try:
        out = dict(z_dim=int(kw.pop("z_dim")), c_dim=int(kw.pop("c_dim")), w_dim=int(kw.pop("w_dim")),
                   img_resolution=int(kw.pop("img_resolution")), img_channels=int(kw.pop("img_channels")))
    except KeyError as e:
        raise ValueError(f"stylegan2-ada init_kwargs lack {e.args[0]!r} (got keys {sorted(init_kwargs)})") from None
    mk = dict(kw.pop("mapping_kwargs", {}) or {})
    sk = dict(kw.pop("synthesis_kwargs", {}) or {})
    kw.pop("epochs", None)  # some forks record a training counter here
    if kw:
        raise ValueError(f"stylegan2-ada init_kwargs: unsupported keys {sorted(kw)}")
    out["lr_multiplier"] = 0.01  # upstream MappingNetwork default
    for k, v in mk.items():
        if k not in _MAPPING_MAP:
            raise ValueError(f"stylegan2-ada mapping_kwargs: unsupported key {k!r} = {v!r}")
        out[_MAPPING_MAP[k]] = v
    for k, v in sk.items():
        if k in _IGNORED_SYNTHESIS:
            continue
        if k not in _SYNTHESIS_MAP:
            raise ValueError(f"stylegan2-ada synthesis_kwargs: unsupported key {k!r} = {v!r}")
        out[_SYNTHESIS_MAP[k]] = v
    if out.get("resample_filter") is not None:
        out["resample_filter"] = tuple(float(v) for v in out["resample_filter"])
    else:
        out.pop("resample_filter", None)
    out.update(variant="ada")
    out.update(overrides)
    return StyleGAN2Config(**out)


def _key_plan(cfg: StyleGAN2Config) -> list[tuple[str, tuple[str, ...], tuple[int, ...] | None]]:
    """(torch key, variable path, transpose axes from torch layout or None) for every tensor we take."""
    plan = []

    def dense(prefix, path):
        plan.append((f"{prefix}.weight", path + ("weight",), (1, 0)))
        plan.append((f"{prefix}.bias", path + ("bias",), None))

    P, B = ("params",), ("buffers",)
    if cfg.c_dim > 0:
        dense("mapping.embed", P + ("mapping", "embed"))
    for i in range(cfg.mapping_layers):
        dense(f"mapping.fc{i}", P + ("mapping", f"fc{i}"))
    plan.append(("mapping.w_avg", B + ("mapping", "w_avg"), None))
    for res in cfg.block_resolutions:
        blk = f"synthesis.b{res}"
        pp = P + ("synthesis", f"b{res}")
        bp = B + ("synthesis", f"b{res}")
        if res == 4:
            plan.append((f"{blk}.const", pp + ("const",), (1, 2, 0)))
        convs = ["conv1"] if res == 4 else ["conv0", "conv1"]
        for cv in convs:
            plan.append((f"{blk}.{cv}.weight", pp + (cv, "weight"), (2, 3, 1, 0)))
            plan.append((f"{blk}.{cv}.bias", pp + (cv, "bias"), None))
            dense(f"{blk}.{cv}.affine", pp + (cv, "affine"))
            if cfg.use_noise:
                plan.append((f"{blk}.{cv}.noise_strength", pp + (cv, "noise_strength"), None))
                plan.append((f"{blk}.{cv}.noise_const", bp + (cv, "noise_const"), None))
        if res == cfg.img_resolution or cfg.architecture == "skip":
            plan.append((f"{blk}.torgb.weight", pp + ("torgb", "weight"), (2, 3, 1, 0)))
            plan.append((f"{blk}.torgb.bias", pp + ("torgb", "bias"), None))
            dense(f"{blk}.torgb.affine", pp + ("torgb", "affine"))
        if res > 4 and cfg.architecture == "resnet":
            plan.append((f"{blk}.skip.weight", pp + ("skip", "weight"), (2, 3, 1, 0)))
    return plan


def _get(tree: Mapping, path: tuple[str, ...]):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


def _is_filter_key(key: str) -> bool:
    return key.endswith("resample_filter")


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], init_kwargs: Mapping[str, Any],
                           **config_overrides) -> tuple[StyleGAN2Config, dict]:
    """A stylegan2-ada `Generator.state_dict()` + its constructor kwargs → `(config, variables)`.

    Every expected key must be present with the expected shape (ValueError naming the key, the expected and the
    found shape otherwise); unexpected keys are an error too. The fixed FIR buffers (`*.resample_filter`) are
    checked against the config's filter instead of being copied."""
    cfg = config_from_init_kwargs(init_kwargs, **config_overrides)
    expected = variable_shapes(cfg)
    sd = {str(k): np.asarray(v) for k, v in state_dict.items()}
    variables: dict = {}
    used = set()
    for key, path, perm in _key_plan(cfg):
        want = tuple(_get(expected, path).shape)
        want_torch = want if perm is None else tuple(want[perm.index(i)] for i in range(len(perm)))
        if key not in sd:
            raise ValueError(f"stylegan2-ada state dict: missing key {key!r} (expected shape {want_torch})")
        arr = sd[key]
        if tuple(arr.shape) != want_torch:
            raise ValueError(f"stylegan2-ada state dict: key {key!r} has shape {tuple(arr.shape)}, expected "
                             f"{want_torch} for config {cfg}")
        arr = arr.astype(np.float32)
        if perm is not None:
            arr = np.ascontiguousarray(np.transpose(arr, perm))
        _set(variables, path, arr)
        used.add(key)
    want_filter = ops.setup_filter(cfg.resample_filter)
    for key in sd:
        if key in used:
            continue
        if _is_filter_key(key):
            if sd[key].shape != want_filter.shape or not np.allclose(sd[key], want_filter, rtol=0, atol=1e-7):
                raise ValueError(f"stylegan2-ada state dict: {key!r} = {sd[key].tolist()} differs from the FIR filter "
                                 f"of resample_filter={list(cfg.resample_filter)}")
            continue
        raise ValueError(f"stylegan2-ada state dict: unexpected key {key!r} (shape {sd[key].shape}) for config {cfg}")
    return cfg, variables


def _from_pickle(path: Path, **config_overrides) -> Loaded:
    from ports import torch_pickle  # the restricted reader; imported lazily so .npz loading never needs it

    data = torch_pickle.load(path)
    if not isinstance(data, Mapping) or "G_ema" not in data:
        found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"{path}: not a stylegan2-ada network pickle (no 'G_ema' entry; found {found})")
    g = data["G_ema"]
    for attr in ("init_kwargs", "state_dict"):
        if not hasattr(g, attr):
            raise ValueError(f"{path}: G_ema is {type(g).__name__}, not a persistent network record (no .{attr})")
    cls = getattr(g, "class_name", None)
    if cls is not None and cls != "Generator":
        raise ValueError(f"{path}: G_ema has class {cls!r}, expected 'Generator'")
    cfg, variables = params_from_state_dict(g.state_dict(), dict(g.init_kwargs), **config_overrides)
    skipped = tuple(sorted(str(k) for k in data if k != "G_ema"))
    return Loaded(cfg, variables, skipped, str(path))


def load(path: str | Path, init_kwargs: Mapping[str, Any] | None = None, **config_overrides) -> Loaded:
    """Load stylegan2-ada generator weights from a network pickle (`.pkl`, takes `G_ema`) or a state-dict `.npz`
    (constructor kwargs from `init_kwargs`, else from `config.json` beside it: key `constructor_kwargs` or
    `init_kwargs`). Returns `Loaded(config, variables, skipped, source)`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"stylegan2-ada weights not found: {path}")
    if path.suffix == ".pkl":
        return _from_pickle(path, **config_overrides)
    if path.suffix == ".npz":
        if init_kwargs is None:
            cj = path.with_name("config.json")
            if not cj.exists():
                raise ValueError(f"{path}: a state-dict .npz needs init_kwargs (or a config.json beside it)")
            meta = json.loads(cj.read_text())
            init_kwargs = meta.get("constructor_kwargs", meta.get("init_kwargs"))
            if init_kwargs is None:
                raise ValueError(f"{cj}: no 'constructor_kwargs' or 'init_kwargs' entry")
        with np.load(path) as z:
            sd = {k: z[k] for k in z.files}
        cfg, variables = params_from_state_dict(sd, init_kwargs, **config_overrides)
        return Loaded(cfg, variables, (), str(path))
    raise ValueError(f"{path}: unsupported file type {path.suffix!r} (expected .pkl or .npz)")


def as_jax(variables: Mapping) -> dict:
    """numpy variable tree → jax arrays (device put once, e.g. before jitting a sampler)."""
    return jax.tree_util.tree_map(jax.numpy.asarray, variables)
