"""Traced chunk programs kept on disk (`jax.export`), so that a repeated run neither traces nor compiles them.

JAX's persistent compilation cache skips compiling a program it has seen, but JAX must still trace the Python
function to find the cache entry, and tracing Diffrax's adaptive solve under `vmap` takes seconds. This module
stores the *traced* program (StableHLO, serialised by `jax.export`) beside that cache, under a key that names
everything the trace depends on, and calls the stored program instead of tracing:
* the source of every module of the `lace_jax` package (a change of our code is a new key);
* the versions of the libraries that trace it (jax, jaxlib, diffrax, equinox, flax, optax, numpy) and the JAX
  switches that change a trace (x64, default matmul precision, the platform, the device count);
* what the caller says about the chunk body (`program_key`: the sampler, its options, the latent size...);
* the structure and static data of the parameters (`describe`) and the shape and dtype of every input.
Where any part is known only by object identity (a lambda, a function or class defined outside `lace_jax` and the
versioned libraries, an object without a stable description), nothing is stored and the program is traced as
usual: a wrong key would silently run a stale program, a missing key only costs the trace.

Programs are stored only when JAX's persistent compilation cache is on (`jax_compilation_cache_dir`, which the
CLIs set; `--nocompilation_cache` turns both off), in its subfolder `lace_jax_programs/`, one file per key,
written atomically. A stored program is plain StableHLO plus its signature, never Python code or a pickle; one
that cannot be read or does not fit the inputs is replaced. Single-process runs only (a multi-process run traces).
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

SUBDIR = "lace_jax_programs"
FORMAT = 1
# Libraries whose code shapes a trace: their versions enter the key, so their functions may appear in a description.
VERSIONED = ("jax", "jaxlib", "diffrax", "equinox", "flax", "optax", "numpy")
_OWN = "lace_jax"
# JAX switches that change what a trace produces (dtypes, random bits, matmul precision): part of the key.
TRACE_FLAGS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_threefry_partitionable",
               "jax_default_prng_impl", "jax_numpy_dtype_promotion", "jax_numpy_rank_promotion")
# Debugging modes that a stored program would silently skip: nothing is stored while one is on.
DEBUG_FLAGS = ("jax_disable_jit", "jax_debug_nans", "jax_debug_infs", "jax_enable_checks")


class NotDescribable(Exception):
    """A part of a pytree has no stable description (see `describe`)."""


def store_dir() -> Optional[Path]:
    """`<jax_compilation_cache_dir>/lace_jax_programs` when JAX's persistent compilation cache is on, else None."""
    base = jax.config.jax_compilation_cache_dir
    if not base or jax.process_count() > 1 or any(getattr(jax.config, f, False) for f in DEBUG_FLAGS):
        return None
    try:
        import flatbuffers  # noqa: F401  (jax.export's serialisation needs it)
    except ImportError:
        return None
    return Path(base) / SUBDIR


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the source of every module of the `lace_jax` package (names and contents)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = sys.version.split()[0]
    return out


def _qualified(obj: Any) -> str:
    """`module:qualname` of a module-level function or class of `lace_jax` or a versioned library."""
    if obj in (type(None), tuple, list, dict):
        return f"builtins:{obj.__qualname__}"
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise NotDescribable(f"{obj!r} is not defined at module level")
    if module.split(".")[0] not in (_OWN,) + VERSIONED:
        raise NotDescribable(f"{module}.{qualname} is outside lace_jax and the versioned libraries")
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not obj:
        raise NotDescribable(f"{module}.{qualname} does not name {obj!r}")
    return f"{module}:{qualname}"


def _static(value: Any) -> Any:
    """A JSON-able description of a static (auxiliary) value of a pytree node."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, float) else repr(value)
    if isinstance(value, (tuple, list)):
        return [type(value).__name__, [_static(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", [[_static(k), _static(v)] for k, v in value.items()]]
    if isinstance(value, enum.Enum):
        return ["enum", _qualified(type(value)), value.name]
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        return ["ndarray", str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
    if type(value).__name__ == "_HashableCallableShim" and hasattr(value, "fun"):   # jax's Partial(partial(...))
        return _static(value.fun)
    if isinstance(value, functools.partial):
        return ["partial", _static(value.func), _static(value.args), _static(dict(value.keywords))]
    if isinstance(value, (types.FunctionType, type)):
        return ["ref", _qualified(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ["dataclass", _qualified(type(value)),
                [[f.name, _static(getattr(value, f.name))] for f in dataclasses.fields(value)]]
    raise NotDescribable(f"no stable description of {type(value).__name__} {value!r:.80}")


def describe(tree: Any) -> Optional[str]:
    """A text that is equal for two pytrees exactly when their structure and static data are (across processes),
    or None where part of it is known only by object identity."""
    def walk(td) -> Any:
        data = td.node_data()
        if data is None:
            return "*"
        kind, aux = data
        return [_qualified(kind), _static(aux), [walk(c) for c in td.children()]]

    try:
        return json.dumps(walk(jax.tree_util.tree_structure(tree)), separators=(",", ":"))
    except NotDescribable:
        return None


def _aval(x: Any) -> list:
    """[shape, dtype, weak type] of an input (a jax or numpy array or numpy scalar)."""
    if isinstance(x, jax.Array):
        a = jax.typeof(x)
        return [list(a.shape), str(a.dtype), bool(a.weak_type)]
    a = np.asarray(x)
    return [list(a.shape), str(a.dtype), False]


def key(program_key: Mapping[str, Any], params: Any, args: tuple, num_devices: int) -> Optional[str]:
    """The store key (hex sha256) of a chunk program, or None when it cannot be keyed safely."""
    shape = describe(params)
    if shape is None:
        return None
    try:
        caller = json.dumps(program_key, sort_keys=True, default=lambda v: _static(v))
    except NotDescribable:
        return None
    text = json.dumps({
        "format": FORMAT, "code": code_digest(), "versions": _versions(), "program": caller, "params": shape,
        "avals": [_aval(x) for x in jax.tree_util.tree_leaves((params, args))],
        "platform": jax.default_backend(), "devices": int(num_devices),
        "device_kind": jax.local_devices()[0].device_kind,
        "flags": {f: str(getattr(jax.config, f, None)) for f in TRACE_FLAGS},
        "eqx_on_error": os.environ.get("EQX_ON_ERROR"),
    }, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _fits(exported: Any, flat_args: list) -> bool:
    if len(exported.in_avals) != len(flat_args):
        return False
    return all([list(a.shape), str(a.dtype)] == _aval(x)[:2] for a, x in zip(exported.in_avals, flat_args))


def stored(jitted: Callable, args: tuple, directory: Path, name: str) -> Callable:
    """A function equal to `jitted` on inputs shaped like `args`: the program stored as `directory/name` if it is
    there and fits, else `jitted` exported (traced once), stored, and wrapped. Export failures (a host callback,
    an effect) fall back to `jitted` itself. The inputs must be flat: a tuple of arrays and lists of arrays."""
    from jax import export

    path = Path(directory) / f"{name}.jaxexport"
    flat = jax.tree_util.tree_leaves(args)
    exported = None
    if path.is_file():
        try:
            candidate = export.deserialize(bytearray(path.read_bytes()))
            if _fits(candidate, flat):
                exported = candidate
        except Exception:     # unreadable or from another jax: trace again and replace it
            exported = None
    if exported is None:
        try:
            exported = export.export(jitted)(*args)
            blob = exported.serialize()
        except Exception:
            return jitted
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)
        except OSError:       # a read-only or full cache folder: run without storing
            Path(tmp).unlink(missing_ok=True)
    return jax.jit(exported.call)
