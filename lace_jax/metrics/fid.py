"""FID as pytorch-fid computes it, without torch: Inception pool3 features, their statistics, the Fréchet distance
and reference statistics (files, folders, caches).

    variables = ports.inception.load("pt_inception-2015-12-05-6726825d.pth")   # or fid.load_inception(ckpt_dir)
    mu, sigma = fid.statistics_from_batches(variables, uint8_batches, progress=cb)   # streaming, bounded memory
    ref_mu, ref_sigma = fid.load_reference("cifar10_train.npz", variables)           # stats / PNG folder / images
    score = fid.frechet_distance(mu, sigma, ref_mu, ref_sigma)

Conventions (pytorch-fid 0.3.0): uint8 RGB images [N, H, W, 3] → `/255` → bilinear 299×299 (`align_corners=False`,
no antialiasing) → `2x − 1` → `FIDInceptionV3` → pool3 [N, 2048] float32; statistics in float64 (`mean(0)`,
`np.cov(rowvar=False)`, N − 1). Floating images are taken as a generator's output in [−1, 1] and only resized (how
LACE feeds its samples to the same network; see `lace_jax.models.inception.preprocess`).

Everything here is a function of its arguments: nothing is printed, no flags are read. Long computations report
through an optional `progress(done, total)` callback (total None when unknown) and, for reference handling, an
optional `log(message)` callback. Errors are `FIDError` subclasses (`ValueError`s) saying what and where.
"""
from __future__ import annotations

import hashlib
import json
import operator
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.metrics import frechet
from lace_jax.models import inception

DIMS = inception.FEATURES
DEFAULT_BATCH_SIZE = 50
IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")   # pytorch-fid's list
CACHE_SUFFIX = ".fid_stats.npz"
CACHE_FORMAT = "lace_jax.fid_stats"
CACHE_VERSION = 1
PREPROCESS = "pytorch-fid 0.3.0: uint8 RGB /255, bilinear 299 align_corners=False, 2x-1; pool3 float32"

Progress = Callable[[int, "int | None"], None]
Log = Callable[[str], None]


class FIDError(ValueError):
    """Base class of this module's errors."""


class ImageInputError(FIDError):
    """Images of the wrong shape, dtype or layout."""


class StatisticsError(FIDError):
    """Statistics that cannot be computed or compared (too few samples, shape mismatch, non-finite values)."""


class ReferenceFileError(FIDError):
    """A reference path that is missing, unreadable or of an unknown layout."""


# --------------------------------------------------------------------------------------------------------------
# Features.

_prepare = jax.jit(inception.preprocess)
_pool3 = jax.jit(inception.pool3)


def _as_images(images: Any, where: str = "images") -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        hint = " (NCHW? transpose to NHWC)" if arr.ndim == 4 and arr.shape[1] == 3 else ""
        raise ImageInputError(f"{where}: expected RGB images [N, H, W, 3], got shape {arr.shape}{hint}")
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise ImageInputError(f"{where}: expected uint8 (0..255) or floating ([-1, 1]) images, got dtype "
                              f"{arr.dtype}")
    if arr.shape[1] < 1 or arr.shape[2] < 1:
        raise ImageInputError(f"{where}: empty images of shape {arr.shape}")
    return arr


def _rechunk(batches: Iterable[Any], batch_size: int) -> Iterator[np.ndarray]:
    """Regroup a stream of image batches into chunks of `batch_size` images (fewer at the end, and where the image
    size or dtype changes: a chunk never mixes them)."""
    buf: list[np.ndarray] = []
    held = 0
    for i, batch in enumerate(batches):
        arr = _as_images(batch, f"batch {i}")
        if buf and (arr.shape[1:] != buf[0].shape[1:] or arr.dtype != buf[0].dtype):
            yield np.concatenate(buf)
            buf, held = [], 0
        while len(arr):
            take = min(batch_size - held, len(arr))
            buf.append(arr[:take])
            held += take
            arr = arr[take:]
            if held == batch_size:
                yield np.concatenate(buf)
                buf, held = [], 0
    if buf:
        yield np.concatenate(buf)


def _batch_size(value: Any) -> int:
    try:
        n = operator.index(value)
    except TypeError:
        n = 0
    if n < 1:
        raise FIDError(f"batch_size must be a positive integer, got {value!r}")
    return n


def iter_features(variables: Any, batches: Iterable[Any], *, batch_size: int = DEFAULT_BATCH_SIZE,
                  progress: Progress | None = None, total: int | None = None) -> Iterator[np.ndarray]:
    """pool3 features [n, 2048] (float32) for each chunk of a stream of image batches (any sizes; regrouped into
    `batch_size` chunks). The network is compiled once per `batch_size` (a short last chunk is padded and cut
    back); the resize once per input image size. The next chunk is dispatched before the previous result is
    fetched, so reading/decoding images overlaps the network."""
    batch_size = _batch_size(batch_size)
    dev_vars = jax.device_put(variables)
    done = 0
    pending: tuple[jax.Array, int] | None = None

    def finish(item):
        nonlocal done
        feats, m = item
        done += m
        yield np.asarray(feats)[:m]
        if progress is not None:
            progress(done, total)

    for chunk in _rechunk(batches, batch_size):
        n = len(chunk)
        if n < batch_size:
            pad = np.zeros((batch_size - n,) + chunk.shape[1:], chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        out = _pool3(dev_vars, _prepare(jnp.asarray(chunk)))
        if pending is not None:
            yield from finish(pending)
        pending = (out, n)
    if pending is not None:
        yield from finish(pending)


def inception_features(variables: Any, images: Any, batch_size: int = DEFAULT_BATCH_SIZE, *,
                       progress: Progress | None = None) -> np.ndarray:
    """pool3 features [N, 2048] (float32) of images [N, H, W, 3]: uint8 as pytorch-fid reads files, floating as a
    generator's [−1, 1] output (see the module docstring)."""
    arr = _as_images(images)
    batch_size = _batch_size(batch_size)
    if len(arr) == 0:
        return np.zeros((0, DIMS), np.float32)
    chunks = (arr[i:i + batch_size] for i in range(0, len(arr), batch_size))
    return np.concatenate(list(iter_features(variables, chunks, batch_size=batch_size, progress=progress,
                                             total=len(arr))))


# --------------------------------------------------------------------------------------------------------------
# Statistics.

def activation_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]) in float64, as pytorch-fid: `mean(0)` and `np.cov(rowvar=False)` (N − 1)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise StatisticsError(f"activation_statistics: expected features [N >= 2, D], got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


class StatsState(NamedTuple):
    """Running sums for streaming statistics (float64). Sums are of `x − shift`, with `shift` the first batch's
    mean, so that the covariance does not lose digits to a large mean."""
    count: int
    shift: np.ndarray | None     # [D] float64 (None before the first update)
    total: np.ndarray            # [D]    Σ (x − shift)
    outer: np.ndarray            # [D, D] Σ (x − shift)(x − shift)ᵀ


def stats_init(dim: int = DIMS) -> StatsState:
    """An empty accumulator for features of width `dim`."""
    return StatsState(0, None, np.zeros(dim, np.float64), np.zeros((dim, dim), np.float64))


def stats_update(state: StatsState, features: Any) -> StatsState:
    """The accumulator after adding features [n, D] (a new state; the old one is unchanged)."""
    x = np.asarray(features, np.float64)
    dim = state.total.shape[0]
    if x.ndim != 2 or x.shape[1] != dim:
        raise StatisticsError(f"stats_update: expected features [n, {dim}], got shape {x.shape}")
    if len(x) == 0:
        return state
    shift = x.mean(0) if state.shift is None else state.shift
    xc = x - shift
    return StatsState(state.count + len(x), shift, state.total + xc.sum(0), state.outer + xc.T @ xc)


def stats_merge(a: StatsState, b: StatsState) -> StatsState:
    """The accumulator of the union of two sample sets (e.g. per-condition statistics pooled), re-centred on
    `a`'s shift: Σ(x − s) = Σ(x − s_b) + n_b d and Σ(x − s)(x − s)ᵀ = Σ(x − s_b)(x − s_b)ᵀ + d tᵀ + t dᵀ + n_b d dᵀ
    with d = s_b − s, t = Σ(x − s_b)."""
    if b.count == 0:
        return a
    if a.count == 0:
        return b
    d = b.shift - a.shift
    outer_b = b.outer + np.outer(d, b.total) + np.outer(b.total, d) + b.count * np.outer(d, d)
    return StatsState(a.count + b.count, a.shift, a.total + b.total + b.count * d, a.outer + outer_b)


def stats_finalize(state: StatsState) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of everything added, equal to `activation_statistics` of all features at once."""
    n = state.count
    if n < 2:
        raise StatisticsError(f"stats_finalize: need at least 2 samples for a covariance, have {n}")
    mean_c = state.total / n
    sigma = (state.outer - n * np.outer(mean_c, mean_c)) / (n - 1)
    return state.shift + mean_c, (sigma + sigma.T) / 2


def statistics_from_batches(variables: Any, batches: Iterable[Any], *, batch_size: int = DEFAULT_BATCH_SIZE,
                            progress: Progress | None = None, total: int | None = None,
                            ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the pool3 features of a stream of image batches, in bounded memory (one [2048, 2048] float64
    sum plus one batch). `total` (if known) is passed on to `progress(done, total)`."""
    state = stats_init()
    for feats in iter_features(variables, batches, batch_size=batch_size, progress=progress, total=total):
        state = stats_update(state, feats)
    return stats_finalize(state)


# --------------------------------------------------------------------------------------------------------------
# Distance.

def _check_stats(mu: Any, sigma: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    m, s = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if m.ndim != 1 or s.shape != (m.shape[0], m.shape[0]):
        raise StatisticsError(f"{where}: expected mu [D] and sigma [D, D], got {m.shape} and {s.shape}")
    if not (np.isfinite(m).all() and np.isfinite(s).all()):
        raise StatisticsError(f"{where}: mu or sigma holds non-finite values")
    return m, s


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """FID = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^½ in float64, numpy only.

    tr (Σ₁Σ₂)^½ is Σ √λ over the eigenvalues of Σ₁^½ Σ₂ Σ₁^½ (symmetric PSD, same spectrum as Σ₁Σ₂; see
    `lace_jax.metrics.frechet`). pytorch-fid takes the trace of the real part of `scipy.linalg.sqrtm(Σ₁Σ₂)`; for
    singular covariances (fewer samples than 2048) the two differ by rounding only."""
    m1, s1 = _check_stats(mu1, sigma1, "frechet_distance (first)")
    m2, s2 = _check_stats(mu2, sigma2, "frechet_distance (second)")
    if m1.shape != m2.shape:
        raise StatisticsError(f"frechet_distance: dimensions differ ({m1.shape[0]} vs {m2.shape[0]})")
    return frechet.frechet_distance_from_stats(m1, s1, m2, s2)


def fid_from_features(features1: Any, features2: Any) -> float:
    """FID between two feature sets [N₁, D], [N₂, D].

    For small sets (N₁·N₂ ≤ D²) exactly and cheaply without any D×D matrix: with Xᵢ the centred features,
    Σ₁Σ₂ has the nonzero eigenvalues of CCᵀ for C = X₁X₂ᵀ / √((N₁−1)(N₂−1)), so tr (Σ₁Σ₂)^½ is the sum of the
    singular values of C (N₁×N₂). Otherwise `frechet_distance` of their statistics."""
    x1, x2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1] or min(len(x1), len(x2)) < 2:
        raise StatisticsError(f"fid_from_features: expected features [N >= 2, D] with equal D, got {x1.shape} and "
                              f"{x2.shape}")
    if not (np.isfinite(x1).all() and np.isfinite(x2).all()):
        raise StatisticsError("fid_from_features: features hold non-finite values")
    n1, n2, d = len(x1), len(x2), x1.shape[1]
    if n1 * n2 > d * d:
        return frechet_distance(*activation_statistics(x1), *activation_statistics(x2))
    m1, m2 = x1.mean(0), x2.mean(0)
    c1, c2 = x1 - m1, x2 - m2
    cross = (c1 @ c2.T) / np.sqrt((n1 - 1) * (n2 - 1))
    tr_sqrt = np.linalg.svd(cross, compute_uv=False).sum()
    diff = m1 - m2
    return float(diff @ diff + (c1 * c1).sum() / (n1 - 1) + (c2 * c2).sum() / (n2 - 1) - 2.0 * tr_sqrt)


# --------------------------------------------------------------------------------------------------------------
# Network variables.

def load_inception(directory: str | Path) -> dict:
    """Variables of a `python -m ports.convert --kind inception` checkpoint, checked against the model's tree."""
    from lace_jax import checkpoint

    _, _, variables = checkpoint.load(directory, kind="inception", abstract=inception.variable_shapes())
    return variables


def variables_fingerprint(variables: Any) -> str:
    """sha256 over every variable's path, dtype, shape and bytes: which Inception weights made a statistic."""
    h = hashlib.sha256()
    flat, _ = jax.tree_util.tree_flatten_with_path(variables)
    for path, leaf in sorted(flat, key=lambda pl: jax.tree_util.keystr(pl[0])):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# Reference statistics: files, folders, caches.

def save_reference(path: str | Path, mu: Any, sigma: Any, *, meta: dict | None = None) -> Path:
    """Write statistics in pytorch-fid's layout (an `.npz` with float64 `mu` [D] and `sigma` [D, D], what
    `python -m pytorch_fid --save-stats` writes and reads; stored uncompressed, which `np.load` reads the same and
    which a covariance hardly shrinks under); `meta` (JSON) goes beside them as `lace_jax_meta`, which pytorch-fid
    ignores. Written to a temporary name and renamed into place."""
    m, s = _check_stats(mu, sigma, f"save_reference {path}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ReferenceFileError(f"save_reference: {path} must end in .npz (numpy would append it)")
    extra = {} if meta is None else {"lace_jax_meta": np.array(json.dumps(meta, sort_keys=True))}
    from lace_jax import records

    return records.write_npz(path, mu=m, sigma=s, **extra)


def cache_path(path: str | Path) -> Path:
    """Where `load_reference` caches the statistics of an image source: `<folder>.fid_stats.npz` beside a folder,
    `<stem>.fid_stats.npz` beside an `.npz` of images."""
    path = Path(path)
    if path.is_dir():
        return path.parent / f"{path.name}{CACHE_SUFFIX}"
    return path.with_name(f"{path.stem}{CACHE_SUFFIX}")


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if not files:
        raise ReferenceFileError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ReferenceFileError(f"{path}: unreadable image ({e})") from None


def folder_batches(folder: str | Path, batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
    """uint8 batches [n, H, W, 3] of the images in a folder (not recursive, sorted by name; PIL `.convert('RGB')`
    as pytorch-fid); consecutive images of one size share a batch."""
    files = _folder_files(Path(folder))
    batch_size = _batch_size(batch_size)
    batch: list[np.ndarray] = []
    for f in files:
        img = _read_image(f)
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            yield np.stack(batch)
            batch = []
        batch.append(img)
    if batch:
        yield np.stack(batch)


def _npz_images(path: Path, z: Any) -> np.ndarray:
    if "images" in z.files:
        key = "images"
    else:
        u8 = [k for k in z.files if z[k].dtype == np.uint8]
        if len(u8) != 1:
            raise ReferenceFileError(f"{path}: neither statistics (mu, sigma) nor images (an 'images' array or a "
                                     f"single uint8 array); arrays: {z.files}")
        key = u8[0]
    arr = z[key]
    if arr.dtype != np.uint8:
        raise ReferenceFileError(f"{path}: '{key}' has dtype {arr.dtype}, expected uint8 images")
    return _as_images(arr, f"{path}['{key}']")


def _source_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    files = _folder_files(path) if path.is_dir() else [path]
    for f in files:
        h.update(f"{f.name}|{f.stat().st_size}\n".encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _stats_from_file(path: Path, mu_key: str, sigma_key: str, data: Any) -> tuple[np.ndarray, np.ndarray]:
    try:
        return _check_stats(data[mu_key], data[sigma_key], str(path))
    except StatisticsError as e:
        raise ReferenceFileError(str(e)) from None


def _read_cache(cpath: Path, want: dict) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(cpath, allow_pickle=False) as z:
            if "lace_jax_meta" not in z.files:
                return None
            meta = json.loads(str(z["lace_jax_meta"]))
            if any(meta.get(k) != v for k, v in want.items()):
                return None
            return _stats_from_file(cpath, "mu", "sigma", z)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def load_reference(path: str | Path, variables: Any = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                   progress: Progress | None = None, log: Log | None = None,
                   cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Reference (mu, sigma) from

    * a statistics `.npz` with `mu` and `sigma` (pytorch-fid's `--save-stats` format, or `save_reference`'s);
    * LACE's `inception_*.pkl` (`{'mean', 'cov', ...}`, read by the restricted `ports.torch_pickle` reader);
    * a folder of images, or an `.npz` of uint8 images [N, H, W, 3] (key `images`, or its only uint8 array): their
      statistics are computed with `variables` and cached beside the input (`cache_path`), recording the input's
      sha256 and the weights' fingerprint, so that a changed input or other weights recompute instead of reusing
      a stale cache. `cache=False` neither reads nor writes it. A cache that cannot be written is reported
      through `log` and skipped."""
    path = Path(path)
    batch_size = _batch_size(batch_size)
    say = log or (lambda msg: None)
    if not path.exists():
        raise ReferenceFileError(f"reference not found: {path}")
    if path.is_file() and path.suffix == ".pkl":
        from ports import torch_pickle

        try:
            data = torch_pickle.load(path)
        except torch_pickle.TorchFileError as e:
            raise ReferenceFileError(f"{path}: {e}") from None
        if not (isinstance(data, dict) and "mean" in data and "cov" in data):
            raise ReferenceFileError(f"{path}: not LACE's inception statistics (a dict with 'mean' and 'cov')")
        return _stats_from_file(path, "mean", "cov", data)
    if path.is_file() and path.suffix != ".npz":
        raise ReferenceFileError(f"{path}: expected a folder of images, an .npz (statistics or uint8 images) or "
                                 f"LACE's .pkl statistics")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "mu" in z.files and "sigma" in z.files:
                    return _stats_from_file(path, "mu", "sigma", z)
                images = _npz_images(path, z)
        except (OSError, ValueError) as e:
            if isinstance(e, FIDError):
                raise
            raise ReferenceFileError(f"{path}: unreadable .npz ({e})") from None
    else:
        images = None
    if variables is None:
        raise FIDError(f"{path}: computing reference statistics from images needs the Inception variables")
    cpath = cache_path(path)
    want = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "preprocess": PREPROCESS,
            "source_sha256": _source_fingerprint(path), "inception_sha256": variables_fingerprint(variables)}
    if cache and cpath.is_file():
        hit = _read_cache(cpath, want)
        if hit is not None:
            say(f"reference statistics from cache {cpath}")
            return hit
        say(f"cache {cpath} is stale (input or weights changed); recomputing")
    if images is not None:
        n = len(images)
        batches: Iterable[np.ndarray] = (images[i:i + batch_size] for i in range(0, n, batch_size))
    else:
        n = len(_folder_files(path))
        batches = folder_batches(path, batch_size)
    say(f"computing reference statistics of {n:,} images from {path}")
    mu, sigma = statistics_from_batches(variables, batches, batch_size=batch_size, progress=progress, total=n)
    if cache:
        try:
            save_reference(cpath, mu, sigma, meta={**want, "count": n, "source": path.name})
            say(f"cached reference statistics at {cpath}")
        except OSError as e:
            say(f"could not write the cache {cpath} ({e}); continuing without it")
    return mu, sigma
