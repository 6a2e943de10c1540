"""pytorch-fid's FID Inception weights (`pt_inception-2015-12-05-6726825d.pth`) → `lace_jax.models.inception`
variables. No torch needed.

The file is a bare `state_dict()` of `fid_inception_v3()` (most likely written by a torch of 2019, i.e. in the legacy
non-zip `torch.save` format; the zip format is read too, both by the restricted `ports.torch_pickle` reader, which
runs nothing from the file). Its 94 `BasicConv2d` layers map as

    <name>.conv.weight [O, I, kh, kw]   → params/<name as path>/conv/kernel [kh, kw, I, O]
    <name>.bn.weight / .bn.bias          → params/.../bn/scale, bn/bias
    <name>.bn.running_mean / running_var → batch_stats/.../bn/mean, bn/var

e.g. `Mixed_6e.branch7x7_2.conv.weight` → `params/Mixed_6e/branch7x7_2/conv/kernel`. The expected names and shapes
come from the Flax model itself (`variable_shapes()`), so the port cannot drift from it. Not used and not required:
`fc.weight` / `fc.bias` (the ImageNet classifier; FID stops at pool3), `*.bn.num_batches_tracked` (a training
counter) and the `_metadata` a state dict carries. Key order does not matter. State dicts of pytorch-fid's
`InceptionV3` wrapper (keys `blocks.B.M.…`) are accepted and renamed.

Errors are `InceptionWeightsError` (a `ValueError`) naming the key: missing keys, unexpected keys, wrong shapes,
non-float dtypes, non-finite values, negative running variances.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
IGNORED = ("fc.weight", "fc.bias")

# pytorch_fid.inception.InceptionV3 holds the same modules as `blocks.<block>.<index>`.
_WRAPPER_PREFIX = {
    "blocks.0.0": "Conv2d_1a_3x3", "blocks.0.1": "Conv2d_2a_3x3", "blocks.0.2": "Conv2d_2b_3x3",
    "blocks.1.0": "Conv2d_3b_1x1", "blocks.1.1": "Conv2d_4a_3x3",
    "blocks.2.0": "Mixed_5b", "blocks.2.1": "Mixed_5c", "blocks.2.2": "Mixed_5d", "blocks.2.3": "Mixed_6a",
    "blocks.2.4": "Mixed_6b", "blocks.2.5": "Mixed_6c", "blocks.2.6": "Mixed_6d", "blocks.2.7": "Mixed_6e",
    "blocks.3.0": "Mixed_7a", "blocks.3.1": "Mixed_7b", "blocks.3.2": "Mixed_7c",
}
_WRAPPER_KEY = re.compile(r"^(blocks\.\d+\.\d+)\.(.+)$")
# Flax leaf (collection, last two path parts) ↔ torch suffix.
_LEAVES = {("params", "conv", "kernel"): "conv.weight", ("params", "bn", "scale"): "bn.weight",
           ("params", "bn", "bias"): "bn.bias", ("batch_stats", "bn", "mean"): "bn.running_mean",
           ("batch_stats", "bn", "var"): "bn.running_var"}


class InceptionWeightsError(ValueError):
    """The state dict is not (a complete, well-formed copy of) the FID Inception weights."""


def _torch_shape(flax_shape: tuple[int, ...], suffix: str) -> tuple[int, ...]:
    if suffix == "conv.weight":
        kh, kw, i, o = flax_shape
        return (o, i, kh, kw)
    return tuple(flax_shape)


def key_plan() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
    """`{torch key: (flax variable path, expected torch shape)}` for every tensor the model needs, in model order."""
    from lace_jax.models.inception import variable_shapes

    layers: dict[tuple[str, ...], dict[str, tuple[tuple[str, ...], tuple[int, ...]]]] = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(variable_shapes())
    for path, leaf in flat:
        names = tuple(str(p.key) for p in path)
        suffix = _LEAVES.get((names[0], names[-2], names[-1]))
        if suffix is None:
            raise AssertionError(f"lace_jax.models.inception has a variable the port does not know: {names}")
        layers.setdefault(names[1:-2], {})[suffix] = (names, _torch_shape(tuple(leaf.shape), suffix))
    order = list(_LEAVES.values())   # torch's order within a layer
    # module names sort in network order (Conv2d_1a… < Conv2d_4a… < Mixed_5b… < Mixed_7c…)
    return {".".join(layer + (suffix,)): layers[layer][suffix]
            for layer in sorted(layers) for suffix in order}


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename `blocks.B.M.…` keys (pytorch-fid's wrapper) to the plain module names; other keys pass unchanged."""
    out: dict[str, Any] = {}
    for k, v in state_dict.items():
        key = str(k)
        m = _WRAPPER_KEY.match(key)
        if m and m.group(1) in _WRAPPER_PREFIX:
            key = f"{_WRAPPER_PREFIX[m.group(1)]}.{m.group(2)}"
        if key in out:
            raise InceptionWeightsError(f"key {key!r} appears twice (once under pytorch-fid's 'blocks.' names)")
        out[key] = v
    return out


def _ignorable(key: str) -> bool:
    return key in IGNORED or key == "_metadata" or key.endswith(".bn.num_batches_tracked")


def convert(state_dict: Mapping[str, Any], *, where: str = "state dict") -> dict:
    """The FID Inception state dict → `{"params": ..., "batch_stats": ...}` (float32 numpy) for `FIDInceptionV3`.

    Every error names the key; all missing keys are listed at once."""
    if not isinstance(state_dict, Mapping):
        raise InceptionWeightsError(f"{where}: expected a state dict (a mapping of names to tensors), found "
                                    f"{type(state_dict).__name__}")
    sd = _unwrap(state_dict)
    plan = key_plan()
    missing = [k for k in plan if k not in sd]
    if missing:
        first = ", ".join(f"{k!r} {list(plan[k][1])}" for k in missing[:4])
        more = f" (and {len(missing) - 4} more)" if len(missing) > 4 else ""
        raise InceptionWeightsError(f"{where}: {len(missing)} of {len(plan)} FID Inception tensors are missing: "
                                    f"{first}{more}")
    unexpected = [k for k in sd if k not in plan and not _ignorable(k)]
    if unexpected:
        raise InceptionWeightsError(f"{where}: unexpected keys {unexpected[:6]}"
                                    f"{f' (and {len(unexpected) - 6} more)' if len(unexpected) > 6 else ''}; "
                                    f"not the FID Inception weights of pytorch-fid?")
    variables: dict = {}
    for key, (path, want) in plan.items():
        value = sd[key]
        if not isinstance(value, np.ndarray):
            raise InceptionWeightsError(f"{where}: {key!r} is a {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != want:
            raise InceptionWeightsError(f"{where}: {key!r} has shape {list(value.shape)}, expected {list(want)}")
        if value.dtype.kind != "f":
            raise InceptionWeightsError(f"{where}: {key!r} has dtype {value.dtype}, expected a float tensor")
        arr = np.asarray(value, np.float32)
        if not np.isfinite(arr).all():
            raise InceptionWeightsError(f"{where}: {key!r} holds non-finite values")
        if key.endswith("running_var") and (arr < 0).any():
            raise InceptionWeightsError(f"{where}: {key!r} has negative variances")
        if path[-1] == "kernel":
            arr = arr.transpose(2, 3, 1, 0)
        node = variables
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.ascontiguousarray(arr)
    return variables


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """The state dict in a `.pth`/`.pt` file (legacy or zip `torch.save`, read by `ports.torch_pickle`; a dict with a
    `state_dict` entry is unwrapped) or an `.npz` of it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights not found: {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from ports import torch_pickle  # restricted reader, imported lazily

    data = torch_pickle.load(path)
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        raise InceptionWeightsError(f"{path}: holds a {type(data).__name__}, not a state dict")
    return dict(data)


def load(path: str | Path) -> dict:
    """`convert(read_state_dict(path))`: variables ready for `lace_jax.metrics.fid.inception_features`."""
    return convert(read_state_dict(path), where=str(path))


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (torch hub names weights files with its first 8 digits: `…-6726825d.pth`)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def name_hash_note(path: str | Path, digest: str | None = None) -> str | None:
    """If the file name carries a torch-hub hash prefix (`name-<hex>.pth`), whether the file's sha256 (`digest`, or
    computed) matches it; None for other names."""
    m = re.search(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$", Path(path).name)
    if not m:
        return None
    digest = digest or file_sha256(path)
    if digest.startswith(m.group(1)):
        return f"sha256 {digest[:16]}… matches the name's hash prefix {m.group(1)}"
    return (f"sha256 {digest[:16]}… does NOT match the name's hash prefix {m.group(1)} (a different or damaged "
            f"file; features will not be pytorch-fid's)")
