"""Torch-free, code-free ports of the weights researchers bring: stylegan2-ada network pickles, rosinality
checkpoints, LACE latent classifiers and pytorch-fid's Inception, read by a restricted pickle reader that runs
nothing from the file.

    kind, config, variables = ports.load("network-snapshot.pkl")      # kind detected from the file's structure
    python -m ports.convert --in network-snapshot.pkl --out ckpt/G   # the same, saved as an orbax checkpoint

The per-format readers are `ports.stylegan2_ada`, `ports.rosinality`, `ports.lace_classifier`, `ports.inception`
over `ports.torch_pickle`; `ports.convert` detects the kind and writes `lace_jax.checkpoint` directories.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def load(path: str | Path, kind: str = "auto") -> tuple[str, Any, Any]:
    """`(kind, config, variables)` of user-brought weights, as `lace_jax.checkpoint.load` returns them after
    `python -m ports.convert` (see `ports.convert.load`); bad files raise `ports.convert.ConvertError`."""
    from ports import convert

    return convert.load(path, kind)


__all__ = ["load"]
