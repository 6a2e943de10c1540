"""Run records: environment facts and atomic JSON/NPZ writes, so no output is left half-written."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np


def environment() -> dict:
    """Versions and devices, for the JSON record of every run."""
    import jax

    import lace_jax

    versions = {"python": sys.version.split()[0], "lace_jax": lace_jax.__version__, "jax": jax.__version__,
                "numpy": np.__version__}
    for name, dist in (("jaxlib", "jaxlib"), ("flax", "flax"), ("optax", "optax"), ("diffrax", "diffrax"),
                       ("orbax.checkpoint", "orbax-checkpoint")):
        try:                       # read from the installed metadata: importing them all takes seconds
            versions[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    devices = jax.devices()
    return {"versions": versions, "platform": platform.platform(), "backend": jax.default_backend(),
            "devices": [str(d) for d in devices], "device_kind": devices[0].device_kind,
            "cpu_count": os.cpu_count()}


def file_identity(path: str | Path) -> dict:
    """{"file": name, "size": bytes, "sha256": hex} of a file: what a shared record says about an input, without
    the absolute path of the machine it was made on."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"file": path.name, "size": path.stat().st_size, "sha256": h.hexdigest()}


def shareable(obj: Any, *, cwd: str | Path | None = None, home: str | Path | None = None) -> Any:
    """`obj` (nested dicts, lists, strings) with every absolute path made relative to `cwd` (default: the working
    directory) when inside it, `~/…` when inside `home` (default: the user's), else `…/<name>`, also after the `=`
    of `--flag=/a/path`: a record that people share names no directory of the machine it was made on."""
    cwd = Path(cwd if cwd is not None else os.getcwd())
    home = Path(home if home is not None else Path.home())

    def path(p: Path) -> str:
        for base, prefix in ((cwd, ""), (home, "~")):
            try:
                rel = p.relative_to(base)
            except ValueError:
                continue
            return str(Path(prefix) / rel) if prefix else (str(rel) or ".")
        return f"…/{p.name}" if p.name else "…"

    return _map_paths(obj, path)


def path_identities(obj: Any) -> Any:
    """`obj` with every absolute path replaced by `…/<name>#<first 16 hex of sha256(path)>`: as exact as the path
    for telling two runs apart (resume manifests compare them), without naming the machine's directories, and the
    same from any working directory."""
    import hashlib

    return _map_paths(obj, lambda p: f"…/{p.name}#{hashlib.sha256(str(p).encode()).hexdigest()[:16]}")


def _map_paths(obj: Any, fn: Callable[[Path], str]) -> Any:
    """`obj` (nested mappings, sequences, strings, Paths) with `fn(normalised path)` for each absolute path string,
    also after the `=` of `--flag=/a/path`; sequences come back as lists."""

    def walk(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, Path):
            x = str(x)
        if isinstance(x, str):
            if os.path.isabs(x):
                return fn(Path(os.path.normpath(x)))
            head, eq, tail = x.partition("=")
            if eq and head.startswith("-") and os.path.isabs(tail):
                return f"{head}={fn(Path(os.path.normpath(tail)))}"
        return x

    return walk(obj)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/jax scalars and arrays (and nested containers) to plain JSON types; NaN → None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        arr = np.asarray(obj)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (np.generic,)):
        return to_jsonable(obj.item())
    return obj


def atomic_write(path: str | Path, write: Callable[[Path], Any], suffix: str = ".tmp") -> Path:
    """`write(tmp)` into a temporary file beside `path`, then rename it into place: readers never see a half-written
    file. The one atomic write of the package (JSON, text, NPZ, PNG)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically."""
    return write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> Path:
    """Write an .npz atomically."""
    return atomic_write(path, lambda tmp: np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()}),
                        suffix=".tmp.npz")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.3g}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None) -> str:
    """The one Markdown table writer: one row per mapping, columns `columns` or the union of keys in order of
    appearance; numbers to 3 significant digits, None as an empty cell."""
    cols: list[str] = list(columns or [])
    if not cols:
        for r in rows:
            cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
