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

Three ways to run the same iterations (same maths, same randomness; tests/training/test_gan_block.py):
- `make_steps`: `train_step(state, step)`, one iteration per Python call (2–3 jitted calls: main or d-only, R1).
- `make_block` / `make_train_block`: up to `max_steps` iterations in one jitted call (`lax.fori_loop` over
  `iteration`, which picks d-only / main and R1 with `lax.cond`), so an accelerator is not bound by Python dispatch
  (on CPU it is slower than separate calls: `gan_run.steps_per_call`).
- `make_variants_block`: the block under `jax.vmap` over a leading "variant" axis of the train state and of a
  `Recipe` (seed, G/D learning rates, R1 γ as traced values): V recipes of one architecture, one compilation.
The train state's layout is the same in every path (optax.adam's state; the learning rate is traced, not stored),
so checkpoints of any of them resume in any other.
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
    """Static hyperparameters (Python values baked into the compiled step); `g_lr`, `d_lr` and `r1_gamma` are the
    defaults of a `Recipe`, which is what the compiled functions read."""
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


class Recipe(NamedTuple):
    """The traced part of a run's hyperparameters: the key every iteration's randomness is folded from, and the
    G / D learning rates and R1 weight. Give every leaf a leading axis (`stack_recipes`) to vmap V variants."""
    key: jax.Array
    g_lr: jax.Array
    d_lr: jax.Array
    r1_gamma: jax.Array


def recipe(h: GanHyper, key: jax.Array, **overrides: float) -> Recipe:
    """The `Recipe` of `h` with iteration key `key`; `overrides` replace g_lr, d_lr or r1_gamma."""
    unknown = set(overrides) - {"g_lr", "d_lr", "r1_gamma"}
    if unknown:
        raise ValueError(f"gan.recipe: unknown hyperparameters {sorted(unknown)} (traced ones: g_lr, d_lr, r1_gamma)")
    values = {name: overrides.get(name, getattr(h, name)) for name in ("g_lr", "d_lr", "r1_gamma")}
    return Recipe(key=jnp.asarray(key), **{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


def stack_recipes(recipes) -> Recipe:
    """Recipes (or train states) stacked along a new leading variant axis, for `make_variants_block`."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *recipes)


def unstack(tree, index: int):
    """Variant `index` of a stacked pytree (a train state or recipe stacked by `stack_recipes`)."""
    return jax.tree_util.tree_map(lambda x: x[index], tree)


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


def optimizers(h: GanHyper, g_lr=None, d_lr=None) -> tuple[optax.GradientTransformation,
                                                            optax.GradientTransformation]:
    """(G Adam, D Adam with the lazy-regularisation adjustment). `g_lr` / `d_lr` (default: `h`'s) may be traced
    values: optax.adam keeps no learning rate in its state, so the state's layout does not depend on them."""
    c = h.r1_interval / (h.r1_interval + 1)
    g_lr = h.g_lr if g_lr is None else g_lr
    d_lr = h.d_lr if d_lr is None else d_lr
    g_tx = optax.adam(g_lr, b1=0.0, b2=h.beta2, eps=1e-8)
    d_tx = optax.adam(d_lr * c, b1=0.0 ** c, b2=h.beta2 ** c, eps=1e-8)
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


METRICS = ("loss_g", "loss_d", "d_real", "d_fake", "r1")


class GanSteps(NamedTuple):
    """Pure pieces of one iteration (jit or vmap them as needed); `step` is an int32 scalar, `r1` the last R1
    penalty (reported in every iteration's metrics, as upstream logs it)."""
    main: Callable      # (state, recipe, step) -> (state, metrics): G step, D step on the new G's fakes, EMA
    d_only: Callable    # (state, recipe, step) -> (state, metrics): the D step alone (d_warmup iterations)
    reg: Callable       # (state, recipe, step) -> (state, r1 penalty): the lazy R1 D step
    iteration: Callable  # (state, recipe, step, r1) -> (state, r1, metrics): one whole iteration, R1 included


def make_pieces(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
                h: GanHyper) -> GanSteps:
    """The iteration's pure functions; `sample_real(key, batch)` draws real images."""

    def _keys(rec: Recipe, step):
        return jax.random.split(jax.random.fold_in(rec.key, step), 6)

    def d_update(state, rec: Recipe, g_params, kz, kn, kreal):
        """One D step on fakes of `g_params` and fresh reals: (new D, its Adam state, loss, fake/real logits)."""
        _, d_tx = optimizers(h, rec.g_lr, rec.d_lr)
        real = sample_real(kreal, h.batch_size)
        z = jax.random.normal(kz, (h.batch_size, h.z_dim))
        (ld, (lf, lr)), gd = jax.value_and_grad(d_loss, has_aux=True)(state["d"], g_params, g_apply, d_apply, z,
                                                                      kn, real)
        upd, d_opt = d_tx.update(gd, state["d_opt"], state["d"])
        return optax.apply_updates(state["d"], upd), d_opt, ld, lf, lr

    def main(state, rec: Recipe, step):
        g_tx, _ = optimizers(h, rec.g_lr, rec.d_lr)
        kz1, kn1, kz2, kn2, kreal, _ = _keys(rec, step)
        z1 = jax.random.normal(kz1, (h.batch_size, h.z_dim))
        (lg, fake_logits_g), gg = jax.value_and_grad(g_loss, has_aux=True)(state["g"], state["d"], g_apply,
                                                                          d_apply, z1, kn1)
        upd, g_opt = g_tx.update(gg, state["g_opt"], state["g"])
        g_new = optax.apply_updates(state["g"], upd)
        d_new, d_opt, ld, lf, lr = d_update(state, rec, g_new, kz2, kn2, kreal)
        beta = ema_beta(step, h)
        g_ema = jax.tree_util.tree_map(lambda e, p: p + (e - p) * beta, state["g_ema"], g_new)
        metrics = {"loss_g": lg, "loss_d": ld, "d_real": jnp.mean(lr), "d_fake": jnp.mean(lf)}
        return {"g": g_new, "d": d_new, "g_ema": g_ema, "g_opt": g_opt, "d_opt": d_opt}, metrics

    def d_only(state, rec: Recipe, step):
        _, _, kz2, kn2, kreal, _ = _keys(rec, step)
        d_new, d_opt, ld, lf, lr = d_update(state, rec, state["g"], kz2, kn2, kreal)
        metrics = {"loss_g": jnp.mean(jax.nn.softplus(-lf)), "loss_d": ld, "d_real": jnp.mean(lr),
                   "d_fake": jnp.mean(lf)}
        return dict(state, d=d_new, d_opt=d_opt), metrics

    def reg(state, rec: Recipe, step):
        """The R1 step; with γ = 0 (a traced value) it leaves D and its Adam state as they are, as a skipped step."""
        _, d_tx = optimizers(h, rec.g_lr, rec.d_lr)
        real = sample_real(_keys(rec, step)[5], h.batch_size)
        pen, gd = jax.value_and_grad(lambda d: r1_penalty(d, d_apply, real))(state["d"])
        gd = jax.tree_util.tree_map(lambda g: g * (rec.r1_gamma / 2 * h.r1_interval), gd)
        upd, d_opt = d_tx.update(gd, state["d_opt"], state["d"])
        on = rec.r1_gamma > 0
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b), new, old)
        return dict(state, d=keep(optax.apply_updates(state["d"], upd), state["d"]),
                    d_opt=keep(d_opt, state["d_opt"])), pen

    def iteration(state, rec: Recipe, step, r1):
        if h.d_warmup > 0:
            state, metrics = jax.lax.cond(step < h.d_warmup, d_only, main, state, rec, step)
        else:
            state, metrics = main(state, rec, step)
        if h.r1_interval > 0:
            def with_r1(s, rc, st, last):
                s, pen = reg(s, rc, st)
                return s, jnp.where(rc.r1_gamma > 0, pen, last)
            state, r1 = jax.lax.cond(step % h.r1_interval == 0, with_r1, lambda s, rc, st, last: (s, last),
                                     state, rec, step, r1)
        return state, r1, dict(metrics, r1=r1)

    return GanSteps(main, d_only, reg, iteration)


def make_steps(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
               h: GanHyper, key: jax.Array):
    """`train_step(state, step) -> (state, metrics)`: one iteration per call (the main or d-only step and, when
    step % r1_interval == 0 and γ > 0, the R1 step, each its own jitted call)."""
    p = make_pieces(g_apply, d_apply, sample_real, h)
    rec = recipe(h, key)
    main_j, reg_j, d_only_j = jax.jit(p.main), jax.jit(p.reg), jax.jit(p.d_only)
    last_r1 = {"r1": jnp.asarray(0.0)}

    def train_step(state, step: int):
        s = jnp.asarray(step, jnp.int32)
        state, metrics = (d_only_j if step < h.d_warmup else main_j)(state, rec, s)
        if h.r1_interval > 0 and h.r1_gamma > 0 and step % h.r1_interval == 0:
            state, last_r1["r1"] = reg_j(state, rec, s)
        metrics["r1"] = last_r1["r1"]
        return state, metrics

    return train_step


def make_block(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
               h: GanHyper, max_steps: int):
    """Pure `block(state, recipe, step, n, r1) -> (state, r1, metrics)`: iterations step … step + n − 1
    (n ≤ `max_steps`, a traced value: one compilation serves every block length) in one `lax.fori_loop`.
    `metrics[name]` has shape [max_steps]: row i is iteration step + i, rows ≥ n are NaN."""
    if max_steps < 1:
        raise ValueError(f"gan.make_block: max_steps must be ≥ 1, got {max_steps}")
    iteration = make_pieces(g_apply, d_apply, sample_real, h).iteration

    def block(state, rec: Recipe, step, n, r1):
        step = jnp.asarray(step, jnp.int32)
        buf = {k: jnp.full((max_steps,), jnp.nan, jnp.float32) for k in METRICS}

        def body(i, carry):
            state, r1, buf = carry
            state, r1, m = iteration(state, rec, step + i, r1)
            return state, r1, {k: buf[k].at[i].set(m[k].astype(jnp.float32)) for k in METRICS}

        return jax.lax.fori_loop(0, jnp.asarray(n, jnp.int32), body, (state, jnp.asarray(r1, jnp.float32), buf))

    return block


def make_train_block(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
                     h: GanHyper, key: jax.Array, max_steps: int):
    """`train_block(state, step, n) -> (state, metrics)`: n ≤ `max_steps` iterations in one jitted call
    (`make_block`), the same iterations as n calls of `make_steps`' `train_step`; metrics per iteration
    ([max_steps] arrays, the first n filled). What `loop.run(..., steps_per_call=max_steps)` calls."""
    block = _jit_on_one_device(make_block(g_apply, d_apply, sample_real, h, max_steps))
    rec = recipe(h, key)
    last_r1 = {"r1": jnp.zeros((), jnp.float32)}     # float32, as the block returns it: one compilation

    def train_block(state, step: int, n: int):
        if not 1 <= n <= max_steps:
            raise ValueError(f"train_block: n must be in 1…{max_steps}, got {n}")
        state, last_r1["r1"], metrics = block(state, rec, step, n, last_r1["r1"])
        return state, metrics

    return train_block


def make_variants_block(g_apply: GApply, d_apply: DApply, sample_real: Callable[[jax.Array, int], jax.Array],
                        h: GanHyper, max_steps: int):
    """Jitted `block(states, recipes, step, n, r1s) -> (states, r1s, metrics)` of `make_block` vmapped over a
    leading variant axis of the train states, recipes (`stack_recipes`) and last R1 penalties ([V]); metrics
    are [V, max_steps]. Every variant shares the architecture and the static part of `h`."""
    block = make_block(g_apply, d_apply, sample_real, h, max_steps)
    return _jit_on_one_device(jax.vmap(block, in_axes=(0, 0, None, None, 0)))


def _jit_on_one_device(fn):
    """`jax.jit` with every input and output on the default device: a state restored from a checkpoint (committed
    arrays) and the fresh R1 carry (uncommitted) would otherwise compile the block twice."""
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.jit(fn, in_shardings=one, out_shardings=one)
