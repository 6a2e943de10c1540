"""LACE latent classifiers (`DenseEmbedder`) from the `.pt` files LACE's training scripts write. No torch needed.

LACE's `train_classifier.py` (CIFAR10/ and FFHQ/) saves `{"model_state_dict": F.state_dict(), "state_dict":
F.f.state_dict()}`, where `F` wraps the `DenseEmbedder` as `F.f` (so `model_state_dict` keys carry the prefix `f.`);
LACE's sampling code loads `["state_dict"]`. Two head layouts exist:

* CIFAR-10: last layer `linear` (`num_classes` logits);
* FFHQ: last layer `heads` (`sum(num_classes_list)` outputs; 1 output = a continuous attribute).

`load(path)` accepts those files, a bare state dict saved with `torch.save` (keys with or without `f.`), or an
`.npz` of the state dict, and converts with `lace_jax.models.classifiers.dense_embedder_params_from_state_dict`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

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


def params_from_state_dict(state_dict: Mapping[str, Any]) -> tuple[Any, dict]:
    """A `DenseEmbedder` state dict (keys with or without `f.`) → `(config, params)` of our classifier."""
    from lace_jax.models.classifiers import dense_embedder_params_from_state_dict

    return dense_embedder_params_from_state_dict(_strip_prefix(state_dict))


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
