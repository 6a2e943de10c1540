"""Analysis-by-synthesis judge for the shapes world: explain an image by the render that fits it best.

A CNN judge can be fooled by images no render looks like (soft blobs it calls stars). This judge searches the
renderer's own factor space (`lace_jax.data.shapes`) for the render closest to the image, for each of the four
shapes, and says the image *is* shape s only when s explains it best and what is left over is small enough for
the image to be a render (`TAU`).

Method, per image (jitted, vmapped over the batch and the fits; one compiled program serves every shape):

1. background: the level nearest to the median of the 1-px border (objects reach the border at most with a
   star tip's corner);
2. hue: the hue whose colour direction from the background best matches the pixels that differ from it;
3. coverage map α (each pixel projected onto background → colour), and from it the object's area, centroid and
   angular moments (the n-th moment's phase is n × rotation for an n-fold symmetric shape);
4. per shape: size from the area, centre from the centroid, rotation from the moment; a coarse grid of rotations
   around that estimate (`ROTATION_GRID`, residual only, cheap) picks the `STARTS` best starts, then `STEPS`
   Levenberg–Marquardt steps on the RGB residual through the exact Jacobian of the renderer (the signed
   distance's normal gives every derivative of the anti-aliased coverage), factors kept in [0, 1];
5. the best shape by RMSE.

The decision uses the **edge-normalised residual** `score = ‖image − render‖ / ‖∇render‖` (residual over the
fitted render's finite-difference edge energy, both in [−1, 1] image units). Blur changes an image in proportion
to its outline's edge energy whatever the object's size, contrast or colour, so the score measures *how soft the
edges are*, which plain RMSE mixes up with size and contrast (it cannot separate σ = 0.7 from σ = 2 blur). `TAU`
was calibrated on Gaussian-blurred renders: `docs/fit_judge.md`, `experiments/fit_judge_calibration.py`.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.data import shapes

RESOLUTION = 32
# Decision threshold on the edge-normalised residual (`FitResult.score`): how it was calibrated is in
# docs/fit_judge.md (experiments/fit_judge_calibration.py recomputes it).
TAU = 0.44
# Levenberg–Marquardt steps per start.
STEPS = 6
# Coarse grid per polygon: rotations as fractions of its symmetry period added to the moment estimate; the
# `STARTS` best points of every shape by residual are refined.
ROTATION_GRID = (0.0, -0.125, 0.125, -0.25, 0.25, 0.5)
STARTS = 1
# Images per compiled call (`judge` pads the last chunk).
BATCH = 64
PARAMS = ("size", "x", "y", "rotation", "hue")

_CIRCLE = shapes.SHAPES.index("circle")
_FOLD = {"square": 4, "triangle": 3, "star": 5}
_MAX_FOLD = max(_FOLD.values())
_LEVELS = np.asarray(shapes.BACKGROUND_LEVELS, np.float32)
_HUE_GRID = np.linspace(0.0, 1.0, 257, dtype=np.float32)
_R0, _R1 = shapes.RADIUS_PX_32
_C0, _C1 = shapes.CENTRE_FRACTION
_A0, _A1 = shapes.ROTATION_DEG
# d(R, cx, cy, θ)/d(size, x, y, rotation): the factor → pixel scales of `_geometry`.
_CHAIN = np.asarray([_R1 - _R0, (_C1 - _C0) * RESOLUTION, (_C1 - _C0) * RESOLUTION, np.deg2rad(_A1 - _A0)],
                    np.float32)


class FitResult(NamedTuple):
    """Per-image verdict of `judge` (B images; shape order `shapes.SHAPES`, parameter order `PARAMS`). A circle's
    rotation changes nothing, so its fitted rotation stays at its start, 0.5."""
    shape: jax.Array         # [B] int32: the shape whose best render has the least RMSE
    background: jax.Array    # [B] int32: the background level read from the border
    factors: shapes.Factors  # [B] the best render's factors (`shapes.render(result.factors)` redraws it)
    rmse: jax.Array          # [B] RMSE of that render, [−1, 1] image units
    score: jax.Array         # [B] its edge-normalised residual; realistic iff score <= tau
    realistic: jax.Array     # [B] bool
    margin: jax.Array        # [B] RMSE of the second-best shape minus `rmse` (≥ 0: how clearly the shape wins)
    shape_rmse: jax.Array    # [B, 4] best RMSE per shape
    shape_score: jax.Array   # [B, 4] edge-normalised residual of each shape's best render
    shape_params: jax.Array  # [B, 4, 5] each shape's fitted (size, x, y, rotation, hue) in [0, 1]


class _Outline(NamedTuple):
    """A shape's outline as arrays, so that every shape shares one compiled program. A polygon is folded by its
    n-fold dihedral symmetry: a point goes to its nearest vertex direction (`dirs`; padded to `_MAX_FOLD` by
    repeating the first, which changes no maximum), and inside the wedge [0, π/n] the outline is the one segment
    (ax, 0) → (bx, by), for R = 1. `circle` = 1 selects the circle of radius 1 instead."""
    dirs: np.ndarray     # [_MAX_FOLD, 2] unit vertex directions at zero rotation
    segment: np.ndarray  # [3] ax, bx, by
    circle: np.ndarray   # [] 1.0 for the circle, else 0.0


def _fold_phase(name: str) -> float:
    """Angle of vertex 0 (an outermost vertex) of a polygon at zero rotation."""
    v = shapes.unit_polygon(name)
    return float(np.arctan2(v[0, 1], v[0, 0]))


def _outline(name: str) -> _Outline:
    if name == "circle":
        return _Outline(np.tile(np.asarray([[1.0, 0.0]], np.float32), (_MAX_FOLD, 1)),
                        np.asarray([1.0, 1.0, 1.0], np.float32), np.float32(1.0))
    v = shapes.unit_polygon(name).astype(np.float64)
    n = _FOLD[name]
    nxt = v[1] if len(v) == 2 * n else 0.5 * (v[0] + v[1])   # star: the inner vertex; polygon: edge midpoint
    k = np.arange(_MAX_FOLD)
    angles = _fold_phase(name) + 2.0 * np.pi * np.where(k < n, k, 0) / n
    ra, rb = np.hypot(*v[0]), np.hypot(*nxt)
    return _Outline(np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32),
                    np.asarray([ra, rb * np.cos(np.pi / n), rb * np.sin(np.pi / n)], np.float32), np.float32(0.0))


def _unit_area(shape: int) -> float:
    if shape == _CIRCLE:
        return float(np.pi)
    v = shapes.unit_polygon(shapes.SHAPES[shape]).astype(np.float64)
    return float(0.5 * abs(np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1])))


def _pixel_grid() -> tuple[jax.Array, jax.Array]:
    coords = jnp.arange(RESOLUTION, dtype=jnp.float32) + 0.5
    return jnp.meshgrid(coords, coords, indexing="xy")


def _geometry(u: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Factor-space (size, x, y, rotation) → radius R, centre (cx, cy) in pixels and angle θ in radians."""
    radius = _R0 + (_R1 - _R0) * u[0]
    cx = (_C0 + (_C1 - _C0) * u[1]) * RESOLUTION
    cy = (_C0 + (_C1 - _C0) * u[2]) * RESOLUTION
    theta = jnp.deg2rad(_A0 + (_A1 - _A0) * u[3])
    return radius, cx, cy, theta


def _signed_distance(outline: _Outline, dx: jax.Array, dy: jax.Array, radius: jax.Array,
                     theta: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Exact signed distance d (pixels, negative inside) from pixel offsets (dx, dy) to the outline of radius R
    rotated by θ, and the outline normal's radial and tangential components (n_r, n_t). The same function as the
    renderer's polygon distance, folded into one wedge of the shape's symmetry so a pixel costs one segment instead
    of every edge (and no atan2/sin/cos, which dominate the cost on CPU). The circle is a runtime flag of the
    outline so that one compiled program fits every shape."""
    c, s = jnp.cos(theta), jnp.sin(theta)
    qx, qy = c * dx + s * dy, -s * dx + c * dy                 # the shape's frame
    r = jnp.sqrt(qx * qx + qy * qy)
    fx, fy = None, None
    for k in range(_MAX_FOLD):
        along = qx * outline.dirs[k, 0] + qy * outline.dirs[k, 1]
        across = qy * outline.dirs[k, 0] - qx * outline.dirs[k, 1]
        if fx is None:
            fx, fy = along, across
        else:
            nearer = along > fx
            fx, fy = jnp.where(nearer, along, fx), jnp.where(nearer, across, fy)
    side = jnp.where(fy < 0.0, -1.0, 1.0)
    fy = jnp.abs(fy)                                           # the pixel folded into the wedge [0, π/n]
    er_x, er_y = fx / (r + 1e-12), fy / (r + 1e-12)
    ax = outline.segment[0] * radius
    bax, bay = (outline.segment[1] - outline.segment[0]) * radius, outline.segment[2] * radius
    px, py = fx - ax, fy
    h = jnp.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0.0, 1.0)
    wx, wy = px - h * bax, py - h * bay                        # from the nearest outline point to the pixel
    dist = jnp.sqrt(wx * wx + wy * wy) + 1e-12
    sign = jnp.where(bax * py - bay * px > 0.0, -1.0, 1.0)     # the origin's side of the segment is inside
    # ∇d in the folded frame: the segment's outward normal, else the direction from the nearest vertex (w / |w|
    # is ill-conditioned on the outline itself, where the anti-aliased coverage has its gradient)
    interior = (h > 0.0) & (h < 1.0)
    length = jnp.sqrt(bax * bax + bay * bay)
    nx = jnp.where(interior, bay / length, sign * wx / dist)
    ny = jnp.where(interior, -bax / length, sign * wy / dist)
    n_r = nx * er_x + ny * er_y
    n_t = side * (ny * er_x - nx * er_y)                       # unfolding's reflection flips the tangential part
    circle = outline.circle > 0.5
    return (jnp.where(circle, r - radius, sign * dist), jnp.where(circle, 1.0, n_r), jnp.where(circle, 0.0, n_t))


def _render_parts(outline: _Outline, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Anti-aliased coverage α [H, W] of the shape at factors u, and ∂α/∂(size, x, y, rotation) [4, H, W]."""
    radius, cx, cy, theta = _geometry(u)
    gx, gy = _pixel_grid()
    dx, dy = gx - cx, gy - cy
    d, n_r, n_t = _signed_distance(outline, dx, dy, radius, theta)
    rho = jnp.sqrt(dx * dx + dy * dy) + 1e-12
    dd = jnp.stack([(d - rho * n_r) / radius,                  # ∂d/∂R: d = R·f(q / R)
                    -(n_r * dx - n_t * dy) / rho,               # ∂d/∂cx = −n_x
                    -(n_r * dy + n_t * dx) / rho,               # ∂d/∂cy = −n_y
                    -rho * n_t])                                # ∂d/∂θ
    cov = 0.5 - d
    alpha = jnp.clip(cov, 0.0, 1.0)
    on_edge = ((cov > 0.0) & (cov < 1.0)).astype(jnp.float32)
    return alpha, -on_edge * dd * _CHAIN[:, None, None]


class _Eval(NamedTuple):
    cost: jax.Array      # Σ residual² over the 3·H·W values
    hess: jax.Array      # [5, 5] JᵀJ
    grad: jax.Array      # [5] Jᵀr


def _cost(outline: _Outline, level: jax.Array, target: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Residual cost Σ (render − target)² ([−1, 1] units; target [3, H, W] in [0, 1]) and the render's edge energy
    Σ (finite differences)², without derivatives: a fraction of `_evaluate`'s cost, for the coarse grid."""
    radius, cx, cy, theta = _geometry(u)
    gx, gy = _pixel_grid()
    d, _, _ = _signed_distance(outline, gx - cx, gy - cy, radius, theta)
    alpha = jnp.clip(0.5 - d, 0.0, 1.0)
    k = shapes.object_colour(u[4]) - level
    cost = 4.0 * sum(jnp.sum(jnp.square(alpha * k[c] + level - target[c])) for c in range(3))
    edge = jnp.sum(jnp.square(jnp.diff(alpha, axis=0))) + jnp.sum(jnp.square(jnp.diff(alpha, axis=1)))
    return cost, 4.0 * jnp.sum(k * k) * edge


def _evaluate(outline: _Outline, level: jax.Array, target: jax.Array, u: jax.Array) -> _Eval:
    """Residual cost, Gauss–Newton JᵀJ and Jᵀr of render(outline, level, u) − target ([3, H, W] in [0, 1]).

    The residual per channel is 2·(α·k + m) with k = colour − level and m = level − target; every sum is written
    on [H, W] planes (channel-last arrays and batched tiny matmuls are slow under vmap on CPU)."""
    alpha, dalpha = _render_parts(outline, u)
    colour, dcolour = jax.jvp(shapes.object_colour, (u[4],), (jnp.ones_like(u[4]),))
    k = colour - level
    m = level - target
    half = [alpha * k[c] + m[c] for c in range(3)]                       # residual / 2 per channel
    e = half[0] * k[0] + half[1] * k[1] + half[2] * k[2]
    f = half[0] * dcolour[0] + half[1] * dcolour[1] + half[2] * dcolour[2]
    cost = 4.0 * sum(jnp.sum(h * h) for h in half)
    kk, kd, dd = jnp.sum(k * k), jnp.sum(k * dcolour), jnp.sum(dcolour * dcolour)
    pairs = {(i, j): jnp.sum(dalpha[i] * dalpha[j]) for i in range(4) for j in range(i, 4)}
    hgg = 4.0 * kk * jnp.stack([jnp.stack([pairs[min(i, j), max(i, j)] for j in range(4)]) for i in range(4)])
    hgh = 4.0 * kd * jnp.sum(dalpha * alpha, (-2, -1))
    hhh = 4.0 * dd * jnp.sum(alpha * alpha)
    hess = jnp.concatenate([jnp.concatenate([hgg, hgh[:, None]], 1),
                            jnp.concatenate([hgh, hhh[None]])[None]], 0)
    grad = 4.0 * jnp.concatenate([jnp.sum(dalpha * e, (-2, -1)), jnp.sum(alpha * f)[None]])
    return _Eval(cost, hess, grad)


def _solve5(a: jax.Array, g: jax.Array) -> jax.Array:
    """a⁻¹ g for one symmetric positive-definite 5×5 system by an unrolled Cholesky (a LAPACK call per tiny
    system costs more than its arithmetic under vmap on CPU)."""
    n = a.shape[0]
    zero = jnp.zeros_like(g[0])
    low = [[zero] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            v = a[i, j] - sum((low[i][q] * low[j][q] for q in range(j)), zero)
            low[i][j] = jnp.sqrt(jnp.maximum(v, 1e-20)) if i == j else v / low[j][j]
    y = []
    for i in range(n):
        y.append((g[i] - sum((low[i][q] * y[q] for q in range(i)), zero)) / low[i][i])
    x = [zero] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum((low[q][i] * x[q] for q in range(i + 1, n)), zero)) / low[i][i]
    return jnp.stack(x)


def _fit_start(outline: _Outline, level: jax.Array, target: jax.Array, u0: jax.Array,
               steps: int) -> tuple[jax.Array, jax.Array]:
    """Levenberg–Marquardt from `u0` with the factors kept in [0, 1] (`steps` steps of one renderer evaluation
    each, written so the program holds one copy of it); returns (u, cost) of the best iterate."""
    def body(_, state):
        best_u, best, lam, cand = state
        new = _evaluate(outline, level, target, cand)
        better = new.cost < best.cost
        best_u = jnp.where(better, cand, best_u)
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), new, best)
        lam = jnp.where(better, lam * 0.3, lam * 4.0)
        diag = jnp.diag(best.hess)
        damped = best.hess + jnp.diag(lam * diag + 1e-6 * jnp.mean(diag) + 1e-9)
        return best_u, best, lam, jnp.clip(best_u - _solve5(damped, best.grad), 0.0, 1.0)

    start = _Eval(jnp.float32(jnp.inf), jnp.zeros((5, 5)), jnp.zeros(5))
    best_u, best, _, _ = jax.lax.fori_loop(0, steps + 1, body, (u0, start, jnp.float32(3e-3), u0))
    return best_u, best.cost


def _initial(image: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Background index and a start [4, 5] per shape from an image [H, W, 3] in [0, 1] (see the module doc)."""
    ring = jnp.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    levels = jnp.asarray(_LEVELS)
    background = jnp.argmin(jnp.abs(levels - jnp.mean(jnp.median(ring, axis=0))))
    level = levels[background]
    diff = image - level
    mag = jnp.sqrt(jnp.sum(diff * diff, -1, keepdims=True))
    direction = jnp.sum(mag * diff, (0, 1))                           # strongly coloured pixels dominate
    cand = shapes.object_colour(jnp.asarray(_HUE_GRID)) - level
    cos = (cand @ direction) / (jnp.linalg.norm(cand, axis=-1) * jnp.linalg.norm(direction) + 1e-12)
    hue = jnp.asarray(_HUE_GRID)[jnp.argmax(cos)]
    contrast = shapes.object_colour(hue) - level
    alpha = jnp.clip(diff @ contrast / (contrast @ contrast), 0.0, 1.0)
    gx, gy = _pixel_grid()
    area = jnp.sum(alpha) + 1e-6
    cx, cy = jnp.sum(alpha * gx) / area, jnp.sum(alpha * gy) / area
    zx, zy = gx - cx, gy - cy
    x0 = (cx / RESOLUTION - _C0) / (_C1 - _C0)
    y0 = (cy / RESOLUTION - _C0) / (_C1 - _C0)
    starts = []
    for s, name in enumerate(shapes.SHAPES):
        size = (jnp.sqrt(area / _unit_area(s)) - _R0) / (_R1 - _R0)
        rot = jnp.float32(0.5)
        if s != _CIRCLE:
            n, period = _FOLD[name], 2.0 * np.pi / _FOLD[name]
            moment = jnp.sum(alpha * (zx + 1j * zy) ** n)             # phase n·(vertex-0 angle + θ)
            theta = (jnp.angle(moment) - n * _fold_phase(name)) / n
            theta = theta - period * jnp.round(theta / period)
            rot = (jnp.rad2deg(theta) - _A0) / (_A1 - _A0)
        starts.append(jnp.stack([size, x0, y0, rot, hue]))
    return background, jnp.clip(jnp.stack(starts), 0.0, 1.0)


def _outlines(owners: np.ndarray) -> _Outline:
    return _Outline(*(jnp.asarray(np.stack(a)) for a in zip(*(_outline(shapes.SHAPES[o]) for o in owners))))


@functools.partial(jax.jit, static_argnames=("steps", "rotation_grid", "starts"))
def _fit_chunk(images: jax.Array, steps: int, rotation_grid: tuple, starts: int) -> tuple:
    """(background [N], params [N, 4, 5], cost [N, 4], edge energy [N, 4]) for images [N, 3, H, W] in [−1, 1]."""
    targets = (images.astype(jnp.float32) + 1.0) * 0.5
    background, u0 = jax.vmap(_initial)(jnp.transpose(targets, (0, 2, 3, 1)))
    levels = jnp.asarray(_LEVELS)[background]
    rows = jnp.arange(images.shape[0])[:, None]
    # coarse grid: the moment estimate turned by fractions of the polygon's period (the circle has one point)
    grid = [(s, 0.0 if s == _CIRCLE else o * 360.0 / _FOLD[name] / (_A1 - _A0))
            for s, name in enumerate(shapes.SHAPES) for o in ((0.0,) if s == _CIRCLE else rotation_grid)]
    owner = np.asarray([s for s, _ in grid])
    points = jnp.clip(u0[:, owner].at[..., 3].add(np.asarray([o for _, o in grid], np.float32)), 0.0, 1.0)
    per_point = jax.vmap(_cost, (0, None, None, 0))
    grid_cost, _ = jax.vmap(per_point, (None, 0, 0, 0))(_outlines(owner), levels, targets, points)   # [N, G]
    # refine the `starts` best grid points of every shape
    chosen, fit_owner = [], []
    for s in range(len(shapes.SHAPES)):
        idx = np.flatnonzero(owner == s)
        k = min(starts, len(idx))
        order = jnp.argsort(grid_cost[:, idx], axis=1)[:, :k]
        chosen.append(points[rows, jnp.asarray(idx)[order]])                         # [N, k, 5]
        fit_owner += [s] * k
    fit_owner = np.asarray(fit_owner)
    per_start = jax.vmap(functools.partial(_fit_start, steps=steps), (0, None, None, 0))
    u, cost = jax.vmap(per_start, (None, 0, 0, 0))(_outlines(fit_owner), levels, targets,
                                                   jnp.concatenate(chosen, 1))
    params = []
    for s in range(len(shapes.SHAPES)):
        idx = np.flatnonzero(fit_owner == s)
        params.append(u[rows[:, 0], idx[0] + jnp.argmin(cost[:, idx], 1)])
    params = jnp.stack(params, 1)                                                    # [N, 4, 5]
    per_shape = jax.vmap(_cost, (0, None, None, 0))
    cost, edge = jax.vmap(per_shape, (None, 0, 0, 0))(_outlines(np.arange(len(shapes.SHAPES))), levels, targets,
                                                      params)
    return background, params, cost, edge


def judge(images: jax.Array | np.ndarray, *, tau: float = TAU, steps: int = STEPS,
          rotation_grid: tuple = ROTATION_GRID, starts: int = STARTS, batch_size: int = BATCH) -> FitResult:
    """Fit every image [B, 3, 32, 32] (NCHW in [−1, 1], the generator's output; clipped to that range as when it
    is shown) by the shapes renderer: the best render, each shape's best residual, and whether the image is
    realistic (score ≤ `tau`). Chunks of `batch_size` (a smaller batch: the next power of two) are padded so
    repeated calls reuse a few compiled programs."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != (3, RESOLUTION, RESOLUTION):
        raise ValueError(f"fit_judge.judge: expected images [B, 3, {RESOLUTION}, {RESOLUTION}], got {x.shape}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("fit_judge.judge: empty batch")
    chunk = batch_size if n >= batch_size else 1 << (n - 1).bit_length()
    x = np.clip(x, -1.0, 1.0)
    padded = np.concatenate([x, np.zeros((-n % chunk,) + x.shape[1:], np.float32)])
    grid = tuple(float(o) for o in rotation_grid)
    outs = [jax.device_get(_fit_chunk(jnp.asarray(padded[i:i + chunk]), steps=int(steps), rotation_grid=grid,
                                      starts=int(starts)))
            for i in range(0, len(padded), chunk)]
    background, params, costs, edges = (np.concatenate([o[j] for o in outs])[:n] for j in range(4))
    costs = np.maximum(costs, 0.0)
    shape_rmse = np.sqrt(costs / (3 * RESOLUTION * RESOLUTION))
    shape_score = np.sqrt(costs / np.maximum(edges, 1e-12))
    best = np.argmin(shape_rmse, 1)
    rows = np.arange(n)
    ordered = np.sort(shape_rmse, 1)
    fitted = params[rows, best]
    score = shape_score[rows, best]
    factors = shapes.Factors(jnp.asarray(best, jnp.int32), jnp.asarray(background, jnp.int32),
                             *(jnp.asarray(fitted[:, i]) for i in range(len(PARAMS))))
    return FitResult(shape=factors.shape, background=factors.background, factors=factors,
                     rmse=jnp.asarray(shape_rmse[rows, best]), score=jnp.asarray(score),
                     realistic=jnp.asarray(score <= tau), margin=jnp.asarray(ordered[:, 1] - ordered[:, 0]),
                     shape_rmse=jnp.asarray(shape_rmse), shape_score=jnp.asarray(shape_score),
                     shape_params=jnp.asarray(params))


def labels(images: jax.Array | np.ndarray, *, tau: float = TAU) -> dict:
    """`judge(images)` as labels like the CNN judge's (class indices, factor values in [0, 1]) plus `realistic`
    (a render explains the image, score ≤ `tau`): what `evaluate.py` and the control measurement read."""
    r = judge(images, tau=tau)
    out = {"shape": np.asarray(r.shape), "background": np.asarray(r.background)}
    out.update({n: np.asarray(getattr(r.factors, n)) for n in shapes.CONTINUOUS})
    return {"labels": out, "realistic": np.asarray(r.realistic)}


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Blur NCHW images by a Gaussian of `sigma` pixels (separable, kernel radius ⌈3σ⌉, normalised; borders
    extended by their edge value, the background). The degradation `TAU` is calibrated against."""
    if sigma <= 0:
        return np.asarray(images, np.float32).copy()
    radius = int(np.ceil(3.0 * sigma))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / sigma) ** 2)
    kernel /= kernel.sum()
    x = np.pad(np.asarray(images, np.float64), ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    h, w = x.shape[2] - 2 * radius, x.shape[3] - 2 * radius
    x = sum(k * x[:, :, i:i + h, :] for i, k in enumerate(kernel))
    x = sum(k * x[:, :, :, i:i + w] for i, k in enumerate(kernel))
    return x.astype(np.float32)
