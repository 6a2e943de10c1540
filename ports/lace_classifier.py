"""LACE latent classifiers (`DenseEmbedder`) from the `.pt` files LACE's training scripts write. No torch needed.

LACE's `train_classifier.py` (CIFAR10/ and FFHQ/) saves `{"model_state_dict": F.state_dict(), "state_dict":
F.f.state_dict()}`, where `F` wraps the `DenseEmbedder` as `F.f` (so `model_state_dict` keys carry the prefix `f.`);
LACE's sampling code loads `["state_dict"]`. Two head layouts exist:

* CIFAR-10: last layer `linear` (`num_classes` logits);
* FFHQ: last layer `heads` (`sum(num_classes_list)` outputs; 1 output = a continuous attribute).

`load(path)` accepts those files, a bare state dict saved with `torch.save` (keys with or without `f.`), or an
`.npz` of the state dict, and converts with `params_from_state_dict`.
"""
from __future__ import annotations

from pathlib import Path
import re
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

LAYOUTS = {"linear": "cifar", "heads": "ffhq"}


class Loaded(NamedTuple):
    config: Any              # lace_jax.models.classifiers config
    params: dict
    layout: str              # 'cifar' (last layer `linear`) or 'ffhq' (last layer `heads`)
    num_outputs: int         # logits (CIFAR: classes; FFHQ: sum of the heads' classes, 1 = continuous)
    entry: str               # which entry of the file was used: 'state_dict', 'model_state_dict' or '<root>'
    source: str


def _strip_prefix(sd: Mapping[str, Any], prefix: str = "f.") -> dict[str, np.ndarray]:
    keys = [str(k) for k in sd]
    if keys and all(k.startswith(prefix) for k in keys):
        return {str(k)[len(prefix):]: np.asarray(v) for k, v in sd.items()}
    return {str(k): np.asarray(v) for k, v in sd.items()}


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, np.ndarray) for v in obj.values())


def state_dict_from_checkpoint(data: Any, where: str = "checkpoint") -> tuple[dict[str, np.ndarray], str]:
    """The `DenseEmbedder` state dict inside a loaded LACE checkpoint, and the entry it came from.

    Prefers `state_dict` (what LACE loads); falls back to `model_state_dict` (prefix `f.` removed) or a bare state
    dict. When both entries are present they must agree on every shared tensor."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a dict, found {type(data).__name__}")
    if "state_dict" in data or "model_state_dict" in data:
        entry = "state_dict" if "state_dict" in data else "model_state_dict"
        if not _is_state_dict(data[entry]):
            raise ValueError(f"{where}: entry {entry!r} is not a state dict of tensors")
        sd = _strip_prefix(data[entry])
        if entry == "state_dict" and _is_state_dict(data.get("model_state_dict")):
            other = _strip_prefix(data["model_state_dict"])
            for k in sd.keys() & other.keys():
                if sd[k].shape != other[k].shape or not np.array_equal(sd[k], other[k]):
                    raise ValueError(f"{where}: 'state_dict' and 'model_state_dict' disagree on {k!r}")
        return sd, entry
    if _is_state_dict(data):
        return _strip_prefix(data), "<root>"
    raise ValueError(f"{where}: no 'state_dict' or 'model_state_dict' entry (found {sorted(map(str, data))[:8]})")


def layout_of(state_dict: Mapping[str, Any], where: str = "state dict") -> tuple[str, int]:
    """('cifar' | 'ffhq', number of outputs) from the last layer's name and shape."""
    for head, layout in LAYOUTS.items():
        if f"{head}.weight" in state_dict:
            return layout, int(np.shape(state_dict[f"{head}.weight"])[0])
    raise ValueError(f"{where}: not a LACE DenseEmbedder (no 'linear.weight' or 'heads.weight'; keys "
                     f"{sorted(state_dict)[:8]})")


_NET_KEY = re.compile(r"^net\.(\d+)\.(weight|bias|[A-Za-z_]+)$")


def params_from_state_dict(state_dict: Mapping[str, Any],
                           num_classes_list: Sequence[int] | None = None) -> tuple[dict, dict]:
    """A LACE `DenseEmbedder.state_dict()` (keys `net.{3l}.weight|bias`, `linear.*` or `heads.*`, with or without
    the `f.` prefix of the training wrapper) → `(config, variables)` with `DenseEmbedder(**config)`.

    Sizes and layout are read from the shapes. A `heads` layer holds `sum(num_classes_list)` outputs; the split
    cannot be seen in the weights, so it defaults to one head (`[K]`) unless `num_classes_list` is given.
    Missing, unexpected or misshapen keys raise ValueError naming the key."""
    sd: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        k = str(key)
        k = k[2:] if k.startswith("f.") else k
        if k in sd:
            raise ValueError(f"DenseEmbedder state dict: key {key!r} appears both with and without the 'f.' prefix")
        sd[k] = np.asarray(value)

    params: dict[str, dict[str, np.ndarray]] = {}
    dims: list[int] = []
    used: set[str] = set()
    l = 0
    while f"net.{3 * l}.weight" in sd:
        wk, bk = f"net.{3 * l}.weight", f"net.{3 * l}.bias"
        w = sd[wk]
        if w.ndim != 4 or w.shape[2:] != (1, 1):
            raise ValueError(f"DenseEmbedder state dict: key {wk!r} has shape {tuple(w.shape)}, expected a 1x1 conv "
                             "weight [out, in, 1, 1]")
        out_dim, in_dim = int(w.shape[0]), int(w.shape[1])
        if dims and in_dim != dims[-1]:
            raise ValueError(f"DenseEmbedder state dict: key {wk!r} has {in_dim} input channels (shape "
                             f"{tuple(w.shape)}), but the previous layer has {dims[-1]} outputs")
        if bk not in sd:
            raise ValueError(f"DenseEmbedder state dict: missing key {bk!r}")
        b = sd[bk]
        if tuple(b.shape) != (out_dim,):
            raise ValueError(f"DenseEmbedder state dict: key {bk!r} has shape {tuple(b.shape)}, expected ({out_dim},)")
        if not dims:
            dims.append(in_dim)
        dims.append(out_dim)
        params[f"net_{l}"] = {"kernel": np.ascontiguousarray(w[:, :, 0, 0].T, dtype=np.float32),
                              "bias": b.astype(np.float32)}
        used.update((wk, bk))
        l += 1
    if not dims:
        raise ValueError("DenseEmbedder state dict: missing key 'net.0.weight' (found keys "
                         f"{sorted(sd)[:8]}{' ...' if len(sd) > 8 else ''})")

    layouts = [name for name in LAYOUTS if f"{name}.weight" in sd]
    if len(layouts) != 1:
        raise ValueError("DenseEmbedder state dict: expected exactly one of the keys 'linear.weight' and "
                         f"'heads.weight', found {[f'{n}.weight' for n in layouts] or 'neither'}")
    layout = layouts[0]
    wk, bk = f"{layout}.weight", f"{layout}.bias"
    w = sd[wk]
    if w.ndim != 2 or w.shape[1] != dims[-1]:
        raise ValueError(f"DenseEmbedder state dict: key {wk!r} has shape {tuple(w.shape)}, expected [K, {dims[-1]}]")
    k_out = int(w.shape[0])
    if bk not in sd:
        raise ValueError(f"DenseEmbedder state dict: missing key {bk!r}")
    if tuple(sd[bk].shape) != (k_out,):
        raise ValueError(f"DenseEmbedder state dict: key {bk!r} has shape {tuple(sd[bk].shape)}, expected ({k_out},)")
    params[layout] = {"kernel": np.ascontiguousarray(w.T, dtype=np.float32), "bias": sd[bk].astype(np.float32)}
    used.update((wk, bk))

    for k in sorted(sd):
        if k in used:
            continue
        m = _NET_KEY.match(k)
        if m and int(m.group(1)) % 3 == 1:
            raise ValueError(f"DenseEmbedder state dict: key {k!r} belongs to a norm layer; only norm=None "
                             "DenseEmbedders are supported")
        raise ValueError(f"DenseEmbedder state dict: unexpected key {k!r} (shape {tuple(sd[k].shape)})")

    config: dict[str, Any] = {"dims": tuple(dims), "num_classes": None, "num_classes_list": None}
    if layout == "linear":
        if num_classes_list is not None:
            raise ValueError("DenseEmbedder state dict: num_classes_list given, but the weights have a 'linear' "
                             "(single-output) last layer")
        config["num_classes"] = k_out
    else:
        ncl = (k_out,) if num_classes_list is None else tuple(int(n) for n in num_classes_list)
        if sum(ncl) != k_out or min(ncl) < 1:
            raise ValueError(f"DenseEmbedder state dict: num_classes_list {list(ncl)} does not split the {k_out} "
                             f"outputs of 'heads.weight'")
        config["num_classes_list"] = ncl
    return config, {"params": params}


def load(path: str | Path) -> Loaded:
    """Load a LACE classifier from `.pt`/`.pth` (read by the restricted `ports.torch_pickle` reader) or `.npz`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"LACE classifier not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as z:
            sd, entry = _strip_prefix({k: z[k] for k in z.files}), "<root>"
    else:
        from ports import torch_pickle

        sd, entry = state_dict_from_checkpoint(torch_pickle.load(path), str(path))
    layout, n_out = layout_of(sd, str(path))
    config, params = params_from_state_dict(sd)
    return Loaded(config, params, layout, n_out, entry, str(path))
