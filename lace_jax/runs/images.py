"""Images for people to look at: uint8 conversion, labelled PNG grids, 2-D scatter plots (pillow only)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from lace_jax import records
from lace_jax.models.stylegan2 import to_uint8


to_uint8_nhwc = to_uint8   # the upstream rule, one implementation (`models.stylegan2.to_uint8`)


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile NHWC uint8 images (or NCHW floats in [-1, 1]) into one HWC uint8 grid, row-major."""
    x = np.asarray(images)
    if x.dtype != np.uint8:
        x = to_uint8_nhwc(x)
    n, h, w, c = x.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image")
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = x[i]
    return grid


def label_rows(grid: np.ndarray, labels: Sequence[str], row_height: int, width: int = 160) -> np.ndarray:
    """Prepend a white column to an HWC grid with one text label per row of `row_height` pixels."""
    h = grid.shape[0]
    canvas = Image.new("RGB", (width + grid.shape[1], h), "white")
    canvas.paste(Image.fromarray(_rgb(grid)), (width, 0))
    draw = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        draw.text((4, i * row_height + row_height // 2 - 5), str(text)[:40], fill="black")
    return np.asarray(canvas)


def add_title(image: np.ndarray, title: str, height: int = 16) -> np.ndarray:
    """Put one line of text above an HWC uint8 image."""
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + height), "white")
    canvas.paste(Image.fromarray(_rgb(image)), (0, height))
    ImageDraw.Draw(canvas).text((4, 2), title, fill="black")
    return np.asarray(canvas)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an HWC (or HW) uint8 array as PNG, atomically."""
    return records.atomic_write(path, lambda tmp: Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format="PNG"))


def scatter_png(points: np.ndarray, *, extent: tuple[float, float, float, float], size: int = 512,
                colors: np.ndarray | None = None, background: np.ndarray | None = None,
                radius: int = 2) -> np.ndarray:
    """Render 2-D points as an HWC uint8 image over `extent = (xmin, xmax, ymin, ymax)`.

    `colors` is [N, 3] uint8 (default dark blue); `background` an optional [Hb, Wb] array in [0, 1] (e.g. a
    normalised density on a grid whose row 0 is ymin) drawn in grey underneath.
    """
    xmin, xmax, ymin, ymax = extent
    if background is not None:
        bg = np.asarray(background, np.float64)
        bg = (255 - 120 * np.clip(bg, 0, 1)).astype(np.uint8)[::-1]
        img = Image.fromarray(bg).resize((size, size), Image.BILINEAR).convert("RGB")
    else:
        img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    pts = np.asarray(points, np.float64)
    finite = np.all(np.isfinite(pts), axis=1)
    px = (pts[:, 0] - xmin) / (xmax - xmin) * (size - 1)
    py = (1 - (pts[:, 1] - ymin) / (ymax - ymin)) * (size - 1)
    cols = np.tile(np.array([[20, 40, 160]], np.uint8), (len(pts), 1)) if colors is None else np.asarray(colors)
    for x, y, c, ok in zip(px, py, cols, finite):
        if ok:
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(int(v) for v in c))
    # axes through the origin when it is in view
    if xmin < 0 < xmax:
        x0 = -xmin / (xmax - xmin) * (size - 1)
        draw.line((x0, 0, x0, size), fill=(200, 200, 200))
    if ymin < 0 < ymax:
        y0 = (1 - (-ymin) / (ymax - ymin)) * (size - 1)
        draw.line((0, y0, size, y0), fill=(200, 200, 200))
    return np.asarray(img)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.uint8)
    if image.ndim == 2:
        return np.stack([image] * 3, -1)
    if image.shape[-1] == 1:
        return np.repeat(image, 3, -1)
    return image
