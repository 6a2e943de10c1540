"""The measurements of `experiments/directions_shapes.py` (lace_jax.directions.evaluation) on generators whose
factors are known in closed form: a perfect direction scores slope 1 / R² 1 / no spread, wrong ones do not."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import directions as dirs
from lace_jax.data import shapes
from lace_jax.directions import evaluation as ev

from tests.directions import toys

TARGETS = [0.1, 0.3, 0.5, 0.7, 0.9]


def synthetic_judge(z):
    """Readings of a 'generator + judge' where z0..z3 set x, y, size, hue linearly and z4, z5 the labels."""
    z = np.asarray(z, np.float64)
    out = {name: 0.5 + 0.1 * z[..., i] for i, name in enumerate(("x", "y", "size", "hue"))}
    out["shape"] = (z[..., 4] > 0).astype(np.int64)
    out["background"] = (z[..., 5] > 0).astype(np.int64)
    return out


def run_walk(direction, name, z_eval, z_cal, judge=synthetic_judge, amount=ev.shapes_amount, **kw):
    d = dirs.calibrate(direction, jnp.asarray(z_cal), jnp.asarray(amount(name, judge(z_cal)[name]), jnp.float32))
    frames_z = np.stack([np.asarray(dirs.edit_to(jnp.asarray(z_eval), d, float(a)))
                         for a in amount(name, np.asarray(TARGETS))], axis=1)
    return ev.walk_metrics(name, TARGETS, judge(z_eval), judge(frames_z), amount=amount, **kw)


@pytest.fixture(scope="module")
def latents():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    z_eval = np.asarray(jax.random.normal(k1, (32, 8), jnp.float32)) * 0.5
    z_cal = np.asarray(jax.random.normal(k2, (64, 8), jnp.float32)) * 0.5
    return z_eval, z_cal


@pytest.mark.parametrize("name,index", [("x", 0), ("size", 2), ("hue", 3)])
def test_exact_direction_scores_perfectly(latents, name, index):
    z_eval, z_cal = latents
    e = jnp.zeros(8).at[index].set(1.0)
    if name == "size":   # size is nonlinear in its amount (log radius): a monotone law fitted on exact pairs
        a0 = np.linspace(-4, 4, 81)
        z0 = np.zeros((81, 8), np.float32)
        z0[:, index] = a0
        z1 = z0.copy()
        z1[:, index] = np.roll(a0, 3)
        delta = ev.shapes_amount(name, 0.5 + 0.1 * z1[:, index]) - ev.shapes_amount(name, 0.5 + 0.1 * a0)
        d = dirs.fit_monotone(z0, z1, delta.astype(np.float32), radius=6.0, steps=3000).direction
        tol = 0.02
    else:
        d = dirs.linear_direction(e, (0.375 if name == "x" else 0.75) * 0.1)
        tol = 1e-4
    r = run_walk(d, name, z_eval, z_cal)
    assert abs(r["response"]["slope"] - 1.0) < tol, r
    assert r["response"]["r2"] > 1 - tol
    assert abs(r["response"]["intercept"]) < tol
    assert r["response"]["monotone"] == 1.0 and r["response"]["spearman"] == pytest.approx(1.0)
    assert r["target_mae"] < 0.01
    assert set(r["spread"]) == {"x", "y", "size", "hue"} - {name}
    assert max(r["spread"].values()) < 1e-5 and r["spread_mean"] < 1e-5
    assert r["changed_any"] == 0.0


def test_wrong_directions_are_caught(latents):
    z_eval, z_cal = latents
    # the y coordinate used as an "x direction": x does not respond, y spreads along the walk
    r = run_walk(dirs.linear_direction(jnp.zeros(8).at[1].set(1.0), 0.0375), "x", z_eval, z_cal)
    assert abs(r["response"]["slope"]) < 0.05
    assert r["response"]["monotone"] == 0.0
    assert r["spread"]["y"] > 0.2
    # a mixed direction: x responds (at 1/√2 of the calibrated slope) and y leaks, as does a discrete label
    u = jnp.zeros(8).at[0].set(1.0).at[1].set(1.0).at[4].set(1.0) / jnp.sqrt(3.0)
    r = run_walk(dirs.linear_direction(u, 0.0375), "x", z_eval, z_cal)
    assert 0.5 < r["response"]["slope"] < 0.7 and r["response"]["monotone"] == 1.0
    assert r["spread"]["y"] > 0.05 and r["spread"]["size"] < 1e-5
    assert 0.1 < r["changed"]["shape"] < 0.9 and r["changed"]["background"] == 0.0


def test_response_closed_forms():
    req = np.tile(np.linspace(-1, 1, 5), (4, 1))
    r = ev.response(req, -2.0 * req + 0.3)
    assert r["slope"] == pytest.approx(-2.0) and r["intercept"] == pytest.approx(0.3) and r["r2"] == pytest.approx(1.0)
    assert r["monotone"] == 0.0 and r["spearman"] == pytest.approx(-1.0)
    ach = req.copy()
    ach[0, 2] = 5.0            # one walk not monotone
    ach[1, 0] = np.nan         # one walk dropped (a failed solve)
    r = ev.response(req, ach)
    assert r["num_walks"] == 3 and r["num_dropped"] == 1 and r["monotone"] == pytest.approx(2 / 3)
    assert r["r2"] < 0.5
    with pytest.raises(ValueError, match="response"):
        ev.response(req, req[:, :3])


def test_shapes_amount_units_match_the_transforms():
    """A render moved/zoomed by the amount between two factor values is the render at the other value."""
    base = dict(shape=jnp.array([1, 1]), background=jnp.array([0, 0]), rotation=jnp.array([0.5, 0.5]),
                hue=jnp.array([0.2, 0.2]), y=jnp.array([0.5, 0.5]))
    def err(transform, imgs, amount, scale):
        out, _ = transform(imgs[:1], scale * amount, mode="edge")
        return float(jnp.mean(jnp.abs(out[0] - imgs[1])))

    imgs = shapes.render(shapes.Factors(size=jnp.array([0.5, 0.5]), x=jnp.array([0.3, 0.7]), **base))
    a = float(ev.shapes_amount("x", 0.7) - ev.shapes_amount("x", 0.3))
    assert err(dirs.translate_x, imgs, a, 1.0) < 0.01
    assert min(err(dirs.translate_x, imgs, a, 0.8), err(dirs.translate_x, imgs, a, 1.25)) > 0.03
    # zoom blurs the anti-aliased edge (measured 0.025 at the right amount, 0.040 / 0.058 at 0.8× / 1.25×)
    imgs = shapes.render(shapes.Factors(size=jnp.array([0.2, 0.8]), x=jnp.array([0.5, 0.5]), **base))
    a = float(ev.shapes_amount("size", 0.8) - ev.shapes_amount("size", 0.2))
    assert err(dirs.zoom, imgs, a, 1.0) < 0.03
    assert min(err(dirs.zoom, imgs, a, 0.8), err(dirs.zoom, imgs, a, 1.25)) > err(dirs.zoom, imgs, a, 1.0) + 0.01
    for name in ("x", "y", "size", "hue"):
        np.testing.assert_allclose(ev.shapes_value(name, ev.shapes_amount(name, np.array(TARGETS))), TARGETS,
                                   atol=1e-12)
    with pytest.raises(ValueError, match="rotation"):
        ev.shapes_amount("rotation", 0.5)


def test_image_walk_on_the_toy_generator():
    """Through images: the toy disk generator's x law fitted on exact pairs, a centroid 'judge', slope ≈ 1."""
    def judge(z):
        imgs = toys.disk_generator(jnp.asarray(np.asarray(z, np.float32).reshape(-1, toys.DIM)))
        w = jnp.sum(jnp.abs(imgs - imgs[:, :, :1, :1]), axis=1)
        rows = jnp.arange(toys.SIZE, dtype=jnp.float32)[:, None]
        cy = jnp.sum(w * rows, axis=(1, 2)) / jnp.sum(w, axis=(1, 2))
        shape = np.shape(z)[:-1]
        return {"x": np.asarray(toys.centroid_x(imgs) / toys.SIZE).reshape(shape),
                "y": np.asarray(cy / toys.SIZE).reshape(shape)}

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    z0 = jax.random.normal(k1, (64, toys.DIM))
    z1 = z0.at[:, 0].add(jax.random.uniform(k2, (64,), minval=-1.5, maxval=1.5))
    delta = toys.true_g(z1[:, 0]) - toys.true_g(z0[:, 0])
    d = dirs.fit_monotone(z0, z1, delta, steps=1500).direction
    z_eval = np.asarray(jax.random.normal(k3, (16, toys.DIM)))
    z_cal = np.asarray(jax.random.normal(jax.random.fold_in(k3, 1), (32, toys.DIM)))
    ident = lambda name, v: np.asarray(v, np.float64)  # noqa: E731
    targets = [0.35, 0.45, 0.55, 0.65]
    dd = dirs.calibrate(d, jnp.asarray(z_cal), jnp.asarray(judge(z_cal)["x"]))
    frames = np.stack([np.asarray(dirs.edit_to(jnp.asarray(z_eval), dd, t)) for t in targets], axis=1)
    r = ev.walk_metrics("x", targets, judge(z_eval), judge(frames), amount=ident, discrete=())
    assert abs(r["response"]["slope"] - 1.0) < 0.1, r
    assert r["response"]["r2"] > 0.95 and r["response"]["monotone"] == 1.0
    assert r["spread"]["y"] < 0.01
    assert r["changed"] == {} and np.isnan(r["changed_any"])
