"""StyleGAN2 training maths as pure functions: non-saturating logistic loss, lazy R1, EMA generator, Adam.

The generator and discriminator enter as apply functions, so this file knows nothing about their layout:
  g_apply(g_params, z[B, Z], key) -> images [B, 3, R, R]     (key: per-layer noise, may be ignored)
  d_apply(d_params, images) -> logits [B]

Per iteration (as stylegan2-ada-pytorch's phases Gmain, Dmain, Dreg): one G step on softplus(−D(G(z))), one D
step on softplus(D(G(z))) + softplus(−D(x)), and every `r1_interval` iterations a separate D step on
(γ/2)·‖∇ₓD(x)‖²·r1_interval (lazy regularisation). Adam uses β1 = 0, β2 = 0.99; for the lazily regularised D the
learning rate and betas are adjusted by c = interval/(interval+1) (lr·c, β^c) as upstream. Path-length
regularisation and style mixing are left out for the small model. All randomness of iteration `s` comes from
fold_in(key, s). Iterations below `d_warmup` update D only (G and its EMA are frozen): a run that starts from a
trained generator with a fresh discriminator first lets D catch up, so G does not follow an untrained D's gradient.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any
GApply = Callable[[Params, jax.Array, jax.Array], jax.Array]
DApply = Callable[[Params, jax.Array], jax.Array]


class GanHyper(NamedTuple):
    batch_size: int
    z_dim: int
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    beta2: float = 0.99
    r1_gamma: float = 0.01
    r1_interval: int = 16
    ema_kimg: float = 5.0
    ema_rampup: float | None = 0.05
    d_warmup: int = 0


def g_loss(g_params, d_params, g_apply: GApply, d_apply: DApply, z, key):
    """Non-saturating generator loss mean softplus(−D(G(z)))."""
    fake = g_apply(g_params, z, key)
    logits = d_apply(d_params, fake)
    return jnp.mean(jax.nn.softplus(-logits)), logits


def d_loss(d_params, g_params, g_apply: GApply, d_apply: DApply, z, key, real):
    """Logistic discriminator loss mean softplus(D(G(z))) + mean softplus(−D(x))."""
    fake = jax.lax.stop_gradient(g_apply(g_params, z, key))
    lf, lr = d_apply(d_params, fake), d_apply(d_params, real)
    loss = jnp.mean(jax.nn.softplus(lf)) + jnp.mean(jax.nn.softplus(-lr))
    return loss, (lf, lr)


def r1_penalty(d_params, d_apply: DApply, real) -> jax.Array:
    """Mean over the batch of ‖∇ₓ D(x)‖² at real images."""
    grad = jax.grad(lambda x: jnp.sum(d_apply(d_params, x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grad), axis=(1, 2, 3)))


def optimizers(h: GanHyper) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(G Adam, D Adam with the lazy-regularisation adjustment)."""
    c = h.r1_interval / (h.r1_interval + 1)
    g_tx = optax.adam(h.g_lr, b1=0.0, b2=h.beta2, eps=1e-8)
    d_tx = optax.adam(h.d_lr * c, b1=0.0 ** c, b2=h.beta2 ** c, eps=1e-8)
    return g_tx, d_tx


def init_state(g_params, d_params, h: GanHyper) -> dict:
    """Train state: G, D, EMA copy of G, both optimizer states."""
    g_tx, d_tx = optimizers(h)
    return {"g": g_params, "d": d_params, "g_ema": jax.tree_util.tree_map(jnp.array, g_params),
            "g_opt": g_tx.init(g_params), "d_opt": d_tx.init(d_params)}


def ema_beta(step: jax.Array, h: GanHyper) -> jax.Array:
    """0.5^(batch / ema_nimg), with ema_nimg ramped up as min(ema_kimg·1000, images_seen·rampup)."""
    ema_nimg = jnp.asarray(h.ema_kimg * 1000.0, jnp.float32)
    if h.ema_rampup is not None:
        seen = (step.astype(jnp.float32) + 1.0) * h.batch_size
        ema_nimg = jnp.minimum(ema_nimg, seen * h.ema_rampup)
    return 0.5 ** (h.batch_size / jnp.maximum(ema_nimg, 1e-8))


def make_steps(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
               h: GanHyper, key: jax.Array):
    """(`train_step(state, step) -> (state, metrics)`, jitted pieces); R1 runs when step % interval == 0."""
    g_tx, d_tx = optimizers(h)

    def _keys(step):
        k = jax.random.fold_in(key, step)
        return jax.random.split(k, 6)

    def d_update(state, g_params, kz, kn, kreal):
        """One D step on fakes of `g_params` and fresh reals: (new D, its Adam state, loss, fake/real logits)."""
        real = sample_real(kreal, h.batch_size)
        z = jax.random.normal(kz, (h.batch_size, h.z_dim))
        (ld, (lf, lr)), gd = jax.value_and_grad(d_loss, has_aux=True)(state["d"], g_params, g_apply, d_apply, z,
                                                                      kn, real)
        upd, d_opt = d_tx.update(gd, state["d_opt"], state["d"])
        return optax.apply_updates(state["d"], upd), d_opt, ld, lf, lr

    def main(state, step):
        kz1, kn1, kz2, kn2, kreal, _ = _keys(step)
        z1 = jax.random.normal(kz1, (h.batch_size, h.z_dim))
        (lg, fake_logits_g), gg = jax.value_and_grad(g_loss, has_aux=True)(state["g"], state["d"], g_apply,
                                                                          d_apply, z1, kn1)
        upd, g_opt = g_tx.update(gg, state["g_opt"], state["g"])
        g_new = optax.apply_updates(state["g"], upd)
        d_new, d_opt, ld, lf, lr = d_update(state, g_new, kz2, kn2, kreal)
        beta = ema_beta(step, h)
        g_ema = jax.tree_util.tree_map(lambda e, p: p + (e - p) * beta, state["g_ema"], g_new)
        metrics = {"loss_g": lg, "loss_d": ld, "d_real": jnp.mean(lr), "d_fake": jnp.mean(lf)}
        return {"g": g_new, "d": d_new, "g_ema": g_ema, "g_opt": g_opt, "d_opt": d_opt}, metrics

    def reg(state, step):
        kreal = _keys(step)[5]
        real = sample_real(kreal, h.batch_size)
        pen, gd = jax.value_and_grad(lambda d: r1_penalty(d, d_apply, real))(state["d"])
        gd = jax.tree_util.tree_map(lambda g: g * (h.r1_gamma / 2 * h.r1_interval), gd)
        upd, d_opt = d_tx.update(gd, state["d_opt"], state["d"])
        return dict(state, d=optax.apply_updates(state["d"], upd), d_opt=d_opt), pen

    def d_only(state, step):
        _, _, kz2, kn2, kreal, _ = _keys(step)
        d_new, d_opt, ld, lf, lr = d_update(state, state["g"], kz2, kn2, kreal)
        metrics = {"loss_g": jnp.mean(jax.nn.softplus(-lf)), "loss_d": ld, "d_real": jnp.mean(lr),
                   "d_fake": jnp.mean(lf)}
        return dict(state, d=d_new, d_opt=d_opt), metrics

    main_j, reg_j, d_only_j = jax.jit(main), jax.jit(reg), jax.jit(d_only)
    last_r1 = {"r1": jnp.asarray(0.0)}

    def train_step(state, step: int):
        s = jnp.asarray(step, jnp.int32)
        state, metrics = (d_only_j if step < h.d_warmup else main_j)(state, s)
        if h.r1_interval > 0 and h.r1_gamma > 0 and step % h.r1_interval == 0:
            state, last_r1["r1"] = reg_j(state, s)
        metrics["r1"] = last_r1["r1"]
        return state, metrics

    return train_step
