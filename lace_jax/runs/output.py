"""The one writer of a sampling run's outputs, whatever produced them: PNGs (`grid.png` and one per row), then
`samples.npz`, then `record.json` last, each written atomically, so a folder with a record holds a complete run."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from lace_jax import records
from lace_jax.runs import images
from lace_jax.runs.request import RequestError

OUTPUTS = ("record.json", "samples.npz", "grid.png")
STALE = list(OUTPUTS) + ["condition_*.png", "edit_*.png"]


@dataclasses.dataclass
class Output:
    """What a run hands the writer: the grid and per-row PNGs (HWC uint8, by file name), the arrays of
    samples.npz, and the record (the writer adds wall time and the environment)."""
    grid: Optional[np.ndarray]
    pngs: Mapping[str, np.ndarray]
    arrays: Mapping[str, np.ndarray]
    record: dict


def prepare_out_dir(out_dir: Path, stale: Iterable[str] = STALE, fresh_dirs: Sequence[str] = ()) -> None:
    """Create `out_dir`, check it is writable (else a RequestError), delete the outputs of an earlier run (`stale`:
    names or glob patterns) so that a folder never looks complete when this run is not, and remove `fresh_dirs`
    (earlier chunks, when the caller asked for a fresh start)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=out_dir)   # own name: processes share the folder
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise RequestError(f"cannot write to --out_dir {out_dir}: {err.strerror or err}") from None
    for pattern in stale:
        for path in out_dir.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)       # another process of the run may have removed it first
    for d in fresh_dirs:
        shutil.rmtree(out_dir / d, ignore_errors=True)


def slug(text: str) -> str:
    """A file-name piece for an expression that keeps its logic readable: `!a & b | c` → `not_a_and_b_or_c`."""
    for op, word in (("!", " not "), ("&", " and "), ("|", " or ")):
        text = text.replace(op, word)
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text).strip("_")[:60]


def write(out_dir: Path, output: Output, t_start: float) -> None:
    """PNGs, then samples.npz, then record.json (with `time_s.total` and the environment) into `out_dir`."""
    for name, png in output.pngs.items():
        images.save_png(out_dir / name, png)
    if output.grid is not None:
        images.save_png(out_dir / "grid.png", output.grid)
    records.write_npz(out_dir / "samples.npz", **output.arrays)
    record = dict(output.record)
    record.setdefault("time_s", {})["total"] = time.time() - t_start
    record["environment"] = records.environment()
    records.write_json(out_dir / "record.json", records.shareable(record))


def image_rows(world: Any, zs: Sequence[np.ndarray], labels: Sequence[str], ncols: int
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """One labelled grid: row r shows up to `ncols` successful samples of zs[r] rendered by the world; returns
    (HWC uint8 grid, the uint8 NHWC images of every row, failed rows included as rendered from zeros)."""
    from lace_jax.runs import workflow

    rows, all_u8 = [], []
    for z in zs:
        ok = np.all(np.isfinite(z), axis=-1)
        imgs = workflow.render(world, z) if len(z) else np.zeros((0, 3, 32, 32), np.float32)
        u8 = images.to_uint8_nhwc(np.nan_to_num(imgs)) if len(z) else np.zeros((0, 32, 32, 3), np.uint8)
        all_u8.append(u8)
        shown = u8[ok][:ncols]
        h, w = u8.shape[1:3] if len(u8) else (32, 32)
        row = np.full((ncols, h, w, 3), 255, np.uint8)
        row[:len(shown)] = shown
        rows.append(row)
    factor = max(1, 64 // rows[0].shape[1]) if rows else 1
    tiles = np.concatenate(rows)
    if factor > 1:
        tiles = np.repeat(np.repeat(tiles, factor, axis=1), factor, axis=2)
    grid = images.make_grid(tiles, ncols=ncols)
    row_h = (grid.shape[0] - 2) // len(zs)
    return images.label_rows(grid, labels, row_h, width=230), all_u8


def image_output(world: Any, zs: Sequence[np.ndarray], labels: Sequence[str], ncols: int, title: str,
                 names: Sequence[str]) -> tuple[np.ndarray, dict, list[np.ndarray]]:
    """(titled grid, {file name: one-row grid}, uint8 images per row) of rendered latents, one row per label;
    `names[k]` is row k's PNG file name."""
    grid, u8 = image_rows(world, zs, labels, ncols)
    pngs = {name: image_rows(world, [z], [label], ncols)[0] for name, label, z in zip(names, labels, zs)}
    return images.add_title(grid, title), pngs, u8


__all__ = ["Output", "OUTPUTS", "prepare_out_dir", "slug", "write", "image_rows", "image_output"]
