"""Config loading: `configs/<name>.py` modules with `get_config() -> dict`, overridden by `key.sub=value` strings.

Plain Python instead of ml_collections keeps the dependency list short; overrides are parsed as Python literals
where they can be (numbers, booleans, lists) and kept as strings otherwise.
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
from pathlib import Path
from typing import Any, Iterable, Mapping


def load_config(name_or_path: str) -> dict:
    """Return `get_config()` of `configs/<name>.py` (or of a file path) as a fresh dict."""
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"_lace_cfg_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(f"configs.{name_or_path}")
        except ModuleNotFoundError as err:
            if err.name != f"configs.{name_or_path}":
                raise
            known = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                           if not p.stem.startswith("_"))
            raise ValueError(f"unknown config {name_or_path!r}; known: {', '.join(known)}") from None
    if not hasattr(module, "get_config"):
        raise ValueError(f"config {name_or_path!r} defines no get_config()")
    return copy.deepcopy(module.get_config())


def parse_value(text: str) -> Any:
    """A Python literal if `text` is one (1e-3, True, [1, 2]), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: Mapping, overrides: Iterable[str]) -> dict:
    """Return a copy of `config` with each `a.b.c=value` applied; unknown keys are an error naming the key."""
    out = copy.deepcopy(dict(config))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise KeyError(f"unknown config key {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        if parts[-1] not in node:
            raise KeyError(f"unknown config key {key!r}; known at that level: {', '.join(sorted(node))}")
        node[parts[-1]] = parse_value(value.strip())
    return out
