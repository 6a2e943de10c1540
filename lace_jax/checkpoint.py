"""Orbax checkpoints of network variables plus a JSON record saying what they are.

Layout of a checkpoint directory:

    <dir>/lace_jax.json   kind, config, versions, source file, parameter counts, the variable tree (shapes, dtypes)
    <dir>/variables/      the orbax (StandardCheckpointer) checkpoint of the variable tree

`save` writes everything into a temporary sibling directory, waits for orbax's asynchronous save to finish and
renames it into place last, so an interrupted save never leaves a directory that looks complete. `load` restores
against an abstract target built from the recorded config (or given by the caller) and first compares it leaf by
leaf with what is on disk: orbax itself would silently restore a mismatched shape, so a mismatch is an error here.

Kinds with a built-in target builder: `stylegan2` (config = `StyleGAN2Config` fields) and `dense_embedder` (LACE's
latent classifier; config = its config fields). Any other kind (e.g. the shipped default's judge) loads against the
tree recorded in its JSON, or against an `abstract` target the caller passes.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy  # noqa: F401  (jax.numpy.dtype resolves 'bfloat16')
import numpy as np

FORMAT = "lace_jax.checkpoint"
FORMAT_VERSION = 1
META_FILE = "lace_jax.json"
VARIABLES_DIR = "variables"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete, or does not match what it is loaded as."""


ORBAX_COMMIT_MARKER = "commit_success.txt"


def forget_save_paths(directory: str | Path) -> None:
    """Orbax writes `commit_success.txt` into every save, naming the absolute folder it was saved to; checkpoints are
    shared (converted weights, the shipped model, train states), so keep the marker (a commit-file reader checks
    that it exists) but not the path."""
    for marker in Path(directory).rglob(ORBAX_COMMIT_MARKER):
        marker.write_text("Checkpoint commit was successful")


# --------------------------------------------------------------------------------------------------------------
# Trees.

def _path_str(path) -> str:
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))))
    return "/".join(parts)


def tree_signature(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{"params/mapping/fc0/weight": (shape, dtype name), ...}` for every array leaf (arrays or ShapeDtypeStructs)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {_path_str(p): (tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype).name) for p, leaf in flat}


def _abstract_from_signature(sig: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for path, (shape, dtype) in sig.items():
        node = tree
        *head, last = path.split("/")
        for p in head:
            node = node.setdefault(p, {})
        node[last] = jax.ShapeDtypeStruct(tuple(shape), jax.numpy.dtype(dtype))   # knows 'bfloat16' too
    return tree


def _count(tree: Any) -> int:
    return int(sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree)))


def _compare(on_disk: Mapping[str, tuple], expected: Mapping[str, tuple], where: str) -> None:
    problems = []
    for k in expected:
        if k not in on_disk:
            problems.append(f"{k} is missing (expected {list(expected[k][0])} {expected[k][1]})")
        elif tuple(on_disk[k][0]) != tuple(expected[k][0]) or on_disk[k][1] != expected[k][1]:
            problems.append(f"{k} is {list(on_disk[k][0])} {on_disk[k][1]}, expected {list(expected[k][0])} "
                            f"{expected[k][1]}")
    problems += [f"{k} ({list(on_disk[k][0])} {on_disk[k][1]}) is not expected" for k in on_disk if k not in expected]
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise CheckpointError(f"{where}: the stored variables do not match the expected tree: "
                              + "; ".join(problems[:6]) + more)


# --------------------------------------------------------------------------------------------------------------
# Kinds.

def _stylegan2_abstract(config: Mapping[str, Any]) -> Any:
    from lace_jax.models.stylegan2 import StyleGAN2Config, variable_shapes

    return variable_shapes(StyleGAN2Config(**config))


def dense_embedder_config(config: Mapping[str, Any]) -> dict:
    """A LACE `DenseEmbedder` config dict (as `ports.lace_classifier.params_from_state_dict` returns it) with
    JSON lists turned back into tuples."""
    cfg = dict(config)
    unknown = set(cfg) - {"dims", "num_classes", "num_classes_list", "negative_slope"}
    if unknown or "dims" not in cfg:
        raise ValueError(f"DenseEmbedder config needs 'dims' and knows only num_classes, num_classes_list, "
                         f"negative_slope; got {sorted(cfg)}")
    cfg["dims"] = tuple(int(d) for d in cfg["dims"])
    if cfg.get("num_classes_list") is not None:
        cfg["num_classes_list"] = tuple(int(n) for n in cfg["num_classes_list"])
    return cfg


def _dense_embedder_abstract(config: Mapping[str, Any]) -> Any:
    shapes = _dense_embedder_shapes(json.dumps(dense_embedder_config(config), sort_keys=True))
    return jax.tree_util.tree_map(lambda a: a, shapes)     # new containers: callers may edit the tree


@functools.lru_cache(maxsize=64)
def _dense_embedder_shapes(config_json: str) -> Any:
    """The variable tree (ShapeDtypeStructs, immutable) of a DenseEmbedder config, traced once per config: a
    world loads a dozen classifiers of two or three configs."""
    from lace_jax.models.classifiers import DenseEmbedder

    cfg = dense_embedder_config(json.loads(config_json))
    x = jax.ShapeDtypeStruct((1, cfg["dims"][0]), np.float32)
    return jax.eval_shape(lambda k, x: DenseEmbedder(**cfg).init(k, x), jax.random.PRNGKey(0), x)


_ABSTRACT: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "stylegan2": _stylegan2_abstract,
    "dense_embedder": _dense_embedder_abstract,
}


def config_to_dict(config: Any) -> dict:
    """A dataclass config (or mapping) as a JSON-ready dict (tuples become lists; restored by the config class)."""
    d = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(d, default=_json_default))


def _json_default(obj):
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"config value of type {type(obj).__name__} is not JSON-serialisable")


# --------------------------------------------------------------------------------------------------------------
# Save / load.

def save(directory: str | Path, variables: Any, config: Mapping[str, Any] | Any, kind: str, *,
         source: str | Mapping | None = None, extra: Mapping[str, Any] | None = None,
         overwrite: bool = False) -> Path:
    """Write `variables` (a pytree of arrays) as an orbax checkpoint plus `lace_jax.json` into `directory`.

    `config` (dict or dataclass) must rebuild the variable tree for `kind`; `source` names the file it was
    converted from; `extra` is stored as-is (JSON). Returns the directory. Refuses to replace an existing
    directory unless `overwrite`."""
    import orbax.checkpoint as ocp

    from lace_jax import records

    directory = Path(directory).resolve()
    if directory.exists() and not overwrite:
        raise CheckpointError(f"{directory} already exists (pass overwrite=True to replace it)")
    if not isinstance(kind, str) or not kind:
        raise CheckpointError(f"checkpoint kind must be a non-empty string, got {kind!r}")
    cfg = config_to_dict(config)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    sig = tree_signature(variables)
    if not sig:
        raise CheckpointError("refusing to save an empty variable tree")
    if kind in _ABSTRACT:
        _compare(sig, tree_signature(_ABSTRACT[kind](cfg)), f"saving {kind} to {directory}")
    params = variables.get("params", variables) if isinstance(variables, Mapping) else variables
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "config": cfg,
        "parameter_count": _count(params), "variable_count": _count(variables),
        "source": None if source is None else dict(source) if isinstance(source, Mapping) else str(source),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": records.environment()["versions"],
        "tree": {k: [list(s), d] for k, (s, d) in sig.items()},
        "extra": dict(extra or {}),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        ckptr = ocp.StandardCheckpointer()
        try:
            ckptr.save(tmp / VARIABLES_DIR, variables)
            ckptr.wait_until_finished()   # the save is asynchronous: never rename before it is on disk
        finally:
            ckptr.close()
        forget_save_paths(tmp)
        records.write_json(tmp / META_FILE, meta)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_meta(directory: str | Path) -> dict:
    """The JSON record of a checkpoint (kind, config, versions, source, counts, tree)."""
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a lace_jax checkpoint (no {META_FILE}; an interrupted save?)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: unreadable JSON ({e})") from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict) or "kind" not in meta:
        raise CheckpointError(f"{path}: not a {FORMAT} record")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['format_version']} is newer than this code reads "
                              f"({FORMAT_VERSION})")
    return meta


def load(directory: str | Path, *, abstract: Any = None, kind: str | None = None) -> tuple[str, dict, Any]:
    """Restore `(kind, config, variables)` from a checkpoint directory (variables as numpy arrays).

    The target tree is `abstract` if given, else built from the recorded config for the built-in kinds, else the
    tree recorded in the JSON. Missing/extra leaves or different shapes/dtypes on disk raise `CheckpointError`
    naming them; `kind` (if given) must match the recorded kind."""
    import orbax.checkpoint as ocp

    directory = Path(directory).resolve()
    meta = read_meta(directory)
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{directory} holds a {meta['kind']!r} checkpoint, not {kind!r}")
    cfg = meta["config"]
    if abstract is None:
        builder = _ABSTRACT.get(meta["kind"])
        try:
            abstract = builder(cfg) if builder else _abstract_from_signature(meta["tree"])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{directory}: its {meta['kind']} config does not build a network: {e}") from None
    vdir = directory / VARIABLES_DIR
    if not vdir.is_dir():
        raise CheckpointError(f"{directory}: no {VARIABLES_DIR}/ (incomplete checkpoint)")
    ckptr = ocp.StandardCheckpointer()
    try:
        try:
            on_disk = ckptr.metadata(vdir)
        except (OSError, ValueError, FileNotFoundError) as e:
            raise CheckpointError(f"{vdir}: unreadable orbax checkpoint ({e})") from None
        disk_tree = getattr(getattr(on_disk, "item_metadata", on_disk), "tree", None)
        if disk_tree is None:
            disk_tree = getattr(on_disk, "item_metadata", on_disk)
        _compare(tree_signature(disk_tree), tree_signature(abstract), str(directory))
        target = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), abstract)
        variables = ckptr.restore(vdir, target)
    finally:
        ckptr.close()
    return meta["kind"], cfg, jax.tree_util.tree_map(np.asarray, variables)


# --------------------------------------------------------------------------------------------------------------
# Typed helpers.

def save_generator(directory: str | Path, config: Any, variables: Any, **kw) -> Path:
    """`save` for a `StyleGAN2Config` + its variables (`{"params", "buffers"}`)."""
    return save(directory, variables, config, "stylegan2", **kw)


def load_generator(directory: str | Path):
    """`(StyleGAN2Config, variables)` from a `stylegan2` checkpoint."""
    from lace_jax.models.stylegan2 import StyleGAN2Config

    _, cfg, variables = load(directory, kind="stylegan2")
    return StyleGAN2Config(**cfg), variables


def save_classifier(directory: str | Path, config: Mapping[str, Any], variables: Any, **kw) -> Path:
    """`save` for a LACE `DenseEmbedder` config dict (`dims`, `num_classes` | `num_classes_list`) + variables."""
    return save(directory, variables, dense_embedder_config(config), "dense_embedder", **kw)


def load_classifier(directory: str | Path) -> tuple[dict, Any]:
    """`(config, variables)` from a `dense_embedder` checkpoint; `DenseEmbedder(**config).apply(variables, w)`."""
    _, cfg, variables = load(directory, kind="dense_embedder")
    return dense_embedder_config(cfg), variables
