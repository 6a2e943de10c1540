"""Toy generators for the direction tests: one latent coordinate controls the disk's x-position exactly."""
import jax
import jax.numpy as jnp

SIZE = 32
DIM = 16
X_AMPLITUDE = 11.0   # x = 16 + 11·tanh(z[0]/3) pixels
X_SCALE = 3.0


def true_x(z):
    """The disk centre's column (pixels) as a function of the latent."""
    return SIZE / 2 + X_AMPLITUDE * jnp.tanh(z[..., 0] / X_SCALE)


def true_g(a):
    """The x-position in fractions of the width, relative to a = 0: the law the fit must find along e_0."""
    return X_AMPLITUDE / SIZE * jnp.tanh(a / X_SCALE)


def disk_generator(z):
    """z[B, 16] -> images[B, 3, 32, 32]: a soft disk; z0 → x, z1 → y, z2 → radius, z3..5 → colour,
    z6 → background level, z7..15 unused."""
    xc = true_x(z)
    yc = SIZE / 2 + 4.0 * jnp.tanh(z[:, 1] / 3.0)
    r = 5.0 + jnp.tanh(z[:, 2] / 2.0)
    col = 0.5 + 0.5 * jnp.tanh(z[:, 3:6])
    bg = -0.6 + 0.2 * jnp.tanh(z[:, 6])
    ii = jnp.arange(SIZE, dtype=jnp.float32)
    dist = jnp.sqrt((ii[None, None, :] - xc[:, None, None]) ** 2 + (ii[None, :, None] - yc[:, None, None]) ** 2)
    cov = jax.nn.sigmoid((r[:, None, None] - dist) / 0.5)
    return bg[:, None, None, None] + cov[:, None] * (col[:, :, None, None] - bg[:, None, None, None])


def centroid_x(images):
    """Column centre of mass of |image − corner pixel| summed over channels, per image."""
    w = jnp.sum(jnp.abs(images - images[:, :, :1, :1]), axis=1)
    cols = jnp.arange(images.shape[-1], dtype=jnp.float32)
    return jnp.sum(w * cols, axis=(1, 2)) / jnp.sum(w, axis=(1, 2))


def mlp_generator(params, z):
    """A tiny random MLP generator z[B, 8] -> images[B, 3, 8, 8] in (−1, 1)."""
    h = jnp.tanh(z @ params["w1"] + params["b1"])
    return jnp.tanh(h @ params["w2"] + params["b2"]).reshape(z.shape[0], 3, 8, 8)


def mlp_params(key, dim=8, hidden=64):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"w1": jax.random.normal(k1, (dim, hidden)) / jnp.sqrt(dim), "b1": jnp.zeros(hidden),
            "w2": jax.random.normal(k2, (hidden, 192)) / jnp.sqrt(hidden),
            "b2": 0.1 * jax.random.normal(k3, (192,))}
