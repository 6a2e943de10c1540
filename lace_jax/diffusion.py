"""Energy-parameterised diffusion models and their composition (Du et al., "Reduce, Reuse, Recycle", 2023).

A discrete-time DDPM with N levels k = 0 … N−1 on a cosine (or linear VP) schedule: x_k = √ᾱ_k x₀ + σ_k ε,
σ_k = √(1 − ᾱ_k). A time-conditioned residual MLP predicts the noise ε; two parameterisations:

* ``score``:  ε̂(x, k) = net(x, k);
* ``energy``: E_θ(x, k) = ‖net(x, k) − x‖²  and  ε̂ = ∇ₓE_θ  (the paper's toy code, `EBMDiffusionModel`).

Both train with the same denoising loss ‖ε̂(x_k, k) − ε‖². At level k the model's log-density gradient is
s(x, k) = −ε̂/σ_k, so the *level energy* used by every sampler and by the composition algebra is
`E_k(x) = E_θ(x, k)/σ_k` (paper: `p_energy`, energy × √(1/(1−ᾱ))), with ∇E_k = −s.

Composition reuses `lace_jax.energy` on level energies (time-dependent energies `e(x, k)`): product `and_`,
mixture `or_(…, temperature)`, negation `(1+a)E₁ − aE₂` (`and_(weighted(E₁, 1+a), not_(E₂, a))`). Score models
have no energy value; for them product and negation (linear in the score) give a `ScoreSum`, and anything that
needs an energy value (mixture, Metropolis–Hastings acceptance) raises a TypeError that says so.

Samplers (all over the levels N−1 → 0, starting from N(0, I)):
* `sample_reverse` — ancestral reverse diffusion with ε̂ (the "sum of scores" baseline for products);
* `sample_pf_ode` — the probability-flow ODE on the levels (deterministic DDIM, η = 0), same score;
* `sample_annealed` — per level, optionally one ancestral step, then `steps_per_level` MCMC steps (ULA, U-HMC,
  MALA, HMC) targeting that level's composed density, through `lace_jax.samplers.mcmc`.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from lace_jax import energy as energy_lib
from lace_jax.samplers import mcmc

SCORE = "score"
ENERGY = "energy"
KINDS = (SCORE, ENERGY)


# ---------------------------------------------------------------------------------------------------------------
# Noise schedule

class Schedule(NamedTuple):
    """Per-level arrays [N] of a discrete VP diffusion (a pytree: leaves are arrays)."""
    betas: jax.Array
    alphas_cumprod: jax.Array
    alphas_cumprod_prev: jax.Array
    sigmas: jax.Array           # √(1 − ᾱ_k)

    @property
    def num_levels(self) -> int:
        return int(self.betas.shape[0])


def _schedule_from_betas(betas: np.ndarray) -> Schedule:
    betas = np.asarray(betas, np.float64)
    acp = np.cumprod(1.0 - betas)
    prev = np.append(1.0, acp[:-1])
    f = lambda a: jnp.asarray(a, jnp.float32)
    return Schedule(f(betas), f(acp), f(prev), f(np.sqrt(1.0 - acp)))


def cosine_schedule(num_levels: int = 100, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Nichol & Dhariwal's cosine schedule (as the paper's toy code): ᾱ(u) ∝ cos²((u + s)/(1 + s)·π/2)."""
    if num_levels < 2:
        raise ValueError(f"cosine_schedule: need at least 2 levels, got {num_levels}")
    u = np.linspace(0, num_levels, num_levels + 1, dtype=np.float64)
    acp = np.cos((u / num_levels + s) / (1 + s) * np.pi / 2) ** 2
    acp = acp / acp[0]
    return _schedule_from_betas(np.clip(1 - acp[1:] / acp[:-1], 0, max_beta))


def linear_schedule(num_levels: int = 100, beta_min: float = 0.1, beta_max: float = 20.0) -> Schedule:
    """The VP-SDE's linear β(t) = β_min + t(β_max − β_min), discretised to N levels: β_k = β(t_k)/N."""
    if num_levels < 2:
        raise ValueError(f"linear_schedule: need at least 2 levels, got {num_levels}")
    t = (np.arange(num_levels) + 1) / num_levels
    return _schedule_from_betas(np.clip((beta_min + t * (beta_max - beta_min)) / num_levels, 0, 0.999))


SCHEDULES = {"cosine": cosine_schedule, "linear": linear_schedule}


# ---------------------------------------------------------------------------------------------------------------
# Network

def timestep_embedding(k: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of (possibly fractional) level indices k[...] → [..., dim]."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(k, jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], -1)
    return jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, dim - 2 * half)])


class ResMLP(nn.Module):
    """Time-conditioned residual MLP: x[B, D], k[B] → [B, D]. Each block: LayerNorm → swish → Dense(h·widen)
    + Dense(emb) → swish → Dense(h·widen) → swish → Dense(h, zero init); residual. Zero-initialised output."""
    x_dim: int = 2
    hidden: int = 64
    num_blocks: int = 3
    widen: int = 2
    emb_dim: int = 32

    @nn.compact
    def __call__(self, x: jax.Array, k: jax.Array) -> jax.Array:
        emb = timestep_embedding(k, self.emb_dim)
        emb = nn.Dense(self.emb_dim)(emb)
        emb = nn.swish(emb)
        h = nn.Dense(self.hidden)(x)
        for _ in range(self.num_blocks):
            r = nn.swish(nn.LayerNorm()(h))
            r = nn.Dense(self.hidden * self.widen)(r) + nn.Dense(self.hidden * self.widen)(emb)
            r = nn.swish(r)
            r = nn.swish(nn.Dense(self.hidden * self.widen)(r))
            h = h + nn.Dense(self.hidden, kernel_init=nn.initializers.zeros)(r)
        return nn.Dense(self.x_dim, kernel_init=nn.initializers.zeros)(h)


# ---------------------------------------------------------------------------------------------------------------
# The model: parameters + schedule + parameterisation

@flax.struct.dataclass
class DiffusionModel:
    """A trained (or initialised) diffusion model. Per-sample methods take x[D] and a level k (scalar)."""
    params: Any
    schedule: Schedule
    net: ResMLP = flax.struct.field(pytree_node=False)
    kind: str = flax.struct.field(pytree_node=False)

    def _net(self, params, x, k):
        return self.net.apply(params, x[None], jnp.asarray(k, jnp.float32)[None])[0]

    def raw_energy(self, x: jax.Array, k, params=None) -> jax.Array:
        """E_θ(x, k) = ‖net(x, k) − x‖² (energy parameterisation only)."""
        if self.kind != ENERGY:
            raise TypeError(f"raw_energy: a {self.kind!r}-parameterised model has no energy value "
                            f"(train with kind='energy')")
        params = self.params if params is None else params
        return jnp.sum((self._net(params, x, k) - x) ** 2)

    def eps(self, x: jax.Array, k, params=None) -> jax.Array:
        """Predicted noise ε̂(x, k): the network output (score) or ∇ₓE_θ (energy)."""
        params = self.params if params is None else params
        if self.kind == SCORE:
            return self._net(params, x, k)
        return jax.grad(lambda xx: self.raw_energy(xx, k, params))(x)

    def sigma(self, k) -> jax.Array:
        return self.schedule.sigmas[jnp.asarray(k, jnp.int32)]

    def energy(self, x: jax.Array, k) -> jax.Array:
        """Level energy E_k(x) = E_θ(x, k)/σ_k, so that −∇E_k is the model's score at level k."""
        return self.raw_energy(x, k) / self.sigma(k)

    def score(self, x: jax.Array, k) -> jax.Array:
        """s(x, k) = −ε̂(x, k)/σ_k ≈ ∇ log p_k(x)."""
        return -self.eps(x, k) / self.sigma(k)


def init_model(key: jax.Array, *, kind: str = ENERGY, schedule: Schedule | None = None, x_dim: int = 2,
               hidden: int = 64, num_blocks: int = 3, widen: int = 2, emb_dim: int = 32) -> DiffusionModel:
    """A freshly initialised model (`kind` 'score' or 'energy'; cosine schedule with 100 levels by default)."""
    if kind not in KINDS:
        raise ValueError(f"init_model: kind must be one of {KINDS}, got {kind!r}")
    net = ResMLP(x_dim=x_dim, hidden=hidden, num_blocks=num_blocks, widen=widen, emb_dim=emb_dim)
    params = net.init(key, jnp.zeros((1, x_dim)), jnp.zeros((1,)))
    return DiffusionModel(params, cosine_schedule() if schedule is None else schedule, net, kind)


# ---------------------------------------------------------------------------------------------------------------
# Training (denoising score matching, ε-prediction)

def dsm_loss(model: DiffusionModel, params, x0: jax.Array, key: jax.Array) -> jax.Array:
    """Mean over the batch of ‖ε̂(x_k, k) − ε‖²/D with k uniform over the levels."""
    kk, ke = jax.random.split(key)
    n = model.schedule.num_levels
    k = jax.random.randint(kk, (x0.shape[0],), 0, n)
    eps = jax.random.normal(ke, x0.shape)
    acp = model.schedule.alphas_cumprod[k][:, None]
    xk = jnp.sqrt(acp) * x0 + jnp.sqrt(1 - acp) * eps
    pred = jax.vmap(lambda xi, ki: model.eps(xi, ki, params))(xk, k)
    return jnp.mean(jnp.sum((pred - eps) ** 2, -1)) / x0.shape[1]


class TrainResult(NamedTuple):
    model: DiffusionModel       # with the EMA parameters
    losses: np.ndarray          # mean loss per logging chunk
    final_params: Any           # the raw (non-EMA) parameters


def _batch_from_array(data: jax.Array, key: jax.Array, batch_size: int) -> jax.Array:
    """A batch of rows of `data` drawn uniformly with replacement."""
    return data[jax.random.randint(key, (batch_size,), 0, data.shape[0])]


@functools.partial(jax.jit, static_argnames=("sample_data", "tx", "batch_size", "chunk"))
def _train_chunk(model, carry, key, sample_data, tx, batch_size, chunk, ema, data=None):
    def step(c, k):
        params, opt_state, ema_params = c
        kd, kl = jax.random.split(k)
        x0 = _batch_from_array(data, kd, batch_size) if sample_data is None else sample_data(kd, batch_size)
        loss, g = jax.value_and_grad(lambda p: dsm_loss(model, p, x0, kl))(params)
        upd, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        ema_params = jax.tree_util.tree_map(lambda e, p: ema * e + (1 - ema) * p, ema_params, params)
        return (params, opt_state, ema_params), loss

    carry, losses = jax.lax.scan(step, carry, jax.random.split(key, chunk))
    return carry, jnp.mean(losses)


def train(model: DiffusionModel, sample_data: Callable | jax.Array | np.ndarray, key: jax.Array, *,
          steps: int = 3000, batch_size: int = 512, lr: float = 1e-3, ema: float = 0.99, chunk: int = 100,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Adam on the denoising loss with fresh batches: `sample_data(key, batch_size)` (a jit-able, hashable
    callable such as a `densities2d.Target.sample`) or, given an array [N, D] of training points, rows drawn from it
    with replacement (passed as an argument, not folded into the compiled step). EMA of the parameters. Returns
    the EMA model and the mean loss of every `chunk` steps; `log` gets one progress line per chunk."""
    if steps < 1 or steps % chunk:
        raise ValueError(f"train: steps ({steps}) must be a positive multiple of chunk ({chunk})")
    data = None
    if not callable(sample_data):
        data = jnp.asarray(sample_data, jnp.float32)
        if data.ndim != 2 or data.shape[1] != model.net.x_dim or data.shape[0] < 1:
            raise ValueError(f"train: training data must be an array [N, {model.net.x_dim}], got shape "
                             f"{tuple(data.shape)}")
        sample_data = None
    tx = optax.adam(lr)
    carry = (model.params, tx.init(model.params), model.params)
    losses = []
    for i, key_i in enumerate(jax.random.split(key, steps // chunk)):
        carry, loss = _train_chunk(model, carry, key_i, sample_data, tx, batch_size, chunk, jnp.float32(ema),
                                   data)
        losses.append(float(loss))
        if log is not None:
            log(f"diffusion train step {(i + 1) * chunk}/{steps}: loss {losses[-1]:.4f}")
    return TrainResult(model.replace(params=carry[2]), np.asarray(losses), carry[0])


# ---------------------------------------------------------------------------------------------------------------
# Composition

def _model_energy(model, x, k):
    return model.energy(x, k)


def level_energy(model: DiffusionModel) -> Callable:
    """The model's time-dependent energy `e(x, k) = E_θ(x, k)/σ_k` as a pytree-callable for `lace_jax.energy`."""
    if model.kind != ENERGY:
        raise TypeError(f"level_energy: a {model.kind!r}-parameterised model has no energy value; "
                        f"use an energy-parameterised model (kind='energy') or its score via `ScoreSum`")
    return Partial(_model_energy, model)


@flax.struct.dataclass
class ScoreSum:
    """A weighted sum of model scores, Σ wᵢ sᵢ(x, k): what product and negation mean for score models.
    It has no energy value; calling it as an energy raises."""
    models: tuple
    weights: jax.Array

    def score(self, x: jax.Array, k) -> jax.Array:
        out = jnp.zeros_like(x)
        for i, m in enumerate(self.models):
            out = out + self.weights[i] * m.score(x, k)
        return out

    def __call__(self, x, *args):
        raise TypeError("this composition of score-parameterised models has no energy value: mixtures and "
                        "Metropolis-corrected samplers (MALA, HMC) need energy-parameterised models "
                        "(kind='energy')")


def _as_target(m):
    if isinstance(m, DiffusionModel):
        return level_energy(m) if m.kind == ENERGY else ScoreSum((m,), jnp.ones((1,), jnp.float32))
    if isinstance(m, ScoreSum) or callable(m):
        return m
    raise TypeError(f"compose: expected a DiffusionModel, a ScoreSum or an energy, got {type(m).__name__}")


def _has_energy(t) -> bool:
    return not isinstance(t, ScoreSum)


def _score_terms(t) -> tuple[tuple, list]:
    if isinstance(t, ScoreSum):
        return t.models, [t.weights[i] for i in range(len(t.models))]
    if isinstance(t, Partial) and t.func is _model_energy:
        return (t.args[0],), [jnp.float32(1.0)]
    raise TypeError("compose: cannot mix a score-only composition with a general energy "
                    f"({type(t).__name__}); use energy-parameterised models throughout")


def _linear(parts: Sequence, weights: Sequence) -> Any:
    """Σ wᵢ partᵢ as an energy when every part has one, else as a ScoreSum."""
    targets = [_as_target(p) for p in parts]
    if all(_has_energy(t) for t in targets):
        terms = [t if float(w) == 1.0 else energy_lib.weighted(t, w) for t, w in zip(targets, weights)]
        return energy_lib.and_(*terms)
    models, ws = [], []
    for t, w in zip(targets, weights):
        ms, wi = _score_terms(t)
        models += list(ms)
        ws += [w * x for x in wi]
    return ScoreSum(tuple(models), jnp.asarray(ws, jnp.float32))


def product(*parts) -> Any:
    """p ∝ Π pᵢ: sum of energies (`energy.and_`), or sum of scores for score models."""
    if len(parts) < 2:
        raise ValueError("product: needs at least two models")
    return _linear(parts, [1.0] * len(parts))


def negation(a_part, b_part, weight: float = 0.3) -> Any:
    """p ∝ p_a^(1+w) / p_b^w: energy (1+w)E_a − wE_b (`and_(weighted(E_a, 1+w), not_(E_b, w))`), or the same
    linear combination of scores. The paper's toy code uses w = 0.3."""
    targets = [_as_target(p) for p in (a_part, b_part)]
    if all(_has_energy(t) for t in targets):
        return energy_lib.and_(energy_lib.weighted(targets[0], 1.0 + weight), energy_lib.not_(targets[1], weight))
    return _linear((a_part, b_part), [1.0 + weight, -weight])


def mixture(*parts, temperature: float = 1.0) -> Any:
    """p ∝ Σ exp(−Eᵢ/T)^T: `energy.or_(…, temperature)`. Needs energy values: score models raise."""
    if len(parts) < 2:
        raise ValueError("mixture: needs at least two models")
    targets = [_as_target(p) for p in parts]
    if not all(_has_energy(t) for t in targets):
        raise TypeError("mixture: the mixture's score depends on the components' energy values (their "
                        "log-weights), which score-parameterised models do not have; use kind='energy'")
    return energy_lib.or_(*targets, temperature=temperature)


COMPOSITIONS = {"product": product, "mixture": mixture, "negation": negation}


def score_fn(target) -> Callable:
    """(x[D], k) → ∇ₓ log p_k for a composed target (a ScoreSum, or any energy e(x, k): −∇e)."""
    if isinstance(target, DiffusionModel):
        return target.score
    if isinstance(target, ScoreSum):
        return target.score
    return lambda x, k: -jax.grad(target)(x, k)


def require_energy(target, who: str) -> None:
    """Raise a clear TypeError if `target` has no energy value (score models), naming the caller."""
    if isinstance(target, ScoreSum) or (isinstance(target, DiffusionModel) and target.kind != ENERGY):
        raise TypeError(f"{who}: needs energy values for its Metropolis–Hastings acceptance; this target is "
                        f"score-parameterised (use kind='energy' models)")


# ---------------------------------------------------------------------------------------------------------------
# Reverse diffusion

class ReverseResult(NamedTuple):
    samples: jax.Array          # [B, D]
    nfe: int                    # score evaluations per sample


def _ancestral_step(schedule: Schedule, score: Callable, x, k, noise):
    """One DDPM step x_k → x_{k−1} with ε̂ = −σ_k s(x, k) and variance β_k (none at k = 0)."""
    acp, acp_prev, beta = schedule.alphas_cumprod[k], schedule.alphas_cumprod_prev[k], schedule.betas[k]
    eps = -schedule.sigmas[k] * score(x, k)
    x0 = (x - jnp.sqrt(1 - acp) * eps) / jnp.sqrt(acp)
    c1 = beta * jnp.sqrt(acp_prev) / (1 - acp)
    c2 = (1 - acp_prev) * jnp.sqrt(1 - beta) / (1 - acp)
    mean = c1 * x0 + c2 * x
    return mean + jnp.where(k > 0, jnp.sqrt(beta), 0.0) * noise


def sample_reverse(key: jax.Array, target, schedule: Schedule, num: int, dim: int = 2) -> ReverseResult:
    """Ancestral reverse diffusion from N(0, I) over all levels with the target's score (for a product of
    models: the sum of their scores, the paper's baseline)."""
    return ReverseResult(_reverse(target, schedule, key, num, dim), schedule.num_levels)


@functools.partial(jax.jit, static_argnames=("num", "dim"))
def _reverse(target, schedule, key, num, dim):
    score = score_fn(target)
    k0, key = jax.random.split(key)
    x = jax.random.normal(k0, (num, dim))
    n = schedule.num_levels

    def body(x, inp):
        k, kk = inp
        noise = jax.random.normal(kk, x.shape)
        return jax.vmap(lambda xi, ni: _ancestral_step(schedule, score, xi, k, ni))(x, noise), None

    ks = jnp.arange(n - 1, -1, -1)
    x, _ = jax.lax.scan(body, x, (ks, jax.random.split(key, n)))
    return x


def _pf_ode_step(schedule: Schedule, score: Callable, x, k):
    """One deterministic DDIM step x_k → x_{k−1} (η = 0): x̂₀ and ε̂ from the score, then
    x_{k−1} = √ᾱ_{k−1} x̂₀ + √(1 − ᾱ_{k−1}) ε̂; at k = 0 (ᾱ_{−1} = 1) it returns x̂₀."""
    acp, acp_prev = schedule.alphas_cumprod[k], schedule.alphas_cumprod_prev[k]
    eps = -schedule.sigmas[k] * score(x, k)
    x0 = (x - jnp.sqrt(1 - acp) * eps) / jnp.sqrt(acp)
    return jnp.sqrt(acp_prev) * x0 + jnp.sqrt(1 - acp_prev) * eps


def pf_ode_start_level(schedule: Schedule, min_alpha: float = 1e-4) -> int:
    """The highest level with ᾱ_k ≥ `min_alpha`, where the deterministic transport starts (see `sample_pf_ode`)."""
    acp = np.asarray(schedule.alphas_cumprod)
    ok = np.nonzero(acp >= float(min_alpha))[0]
    return int(ok[-1]) if ok.size else 0


def sample_pf_ode(key: jax.Array, target, schedule: Schedule, num: int, dim: int = 2,
                  min_alpha: float = 1e-4) -> ReverseResult:
    """The probability-flow ODE of the discrete diffusion, discretised on its own levels (DDIM with η = 0, the
    exact solution of the PF-ODE in the variables x/√ᾱ and σ/√ᾱ for a score constant over each level):
    deterministic from the N(0, I) start drawn with `key`, one score evaluation per level.

    The N(0, I) start stands for the highest level with ᾱ_k ≥ `min_alpha`; the levels above it are skipped. A
    clipped cosine schedule ends at ᾱ ≈ 1e-6, and a deterministic step from there multiplies the network's error
    by √(ᾱ_{k−1}/ᾱ_k) ≈ 30 with no noise to wash it out (docs/diffusion.md); N(0, I) is that level's marginal to
    within ᾱ_k·‖x₀‖²."""
    start = pf_ode_start_level(schedule, min_alpha)
    return ReverseResult(_pf_ode(target, schedule, key, num, dim, start), start + 1)


@functools.partial(jax.jit, static_argnames=("num", "dim", "start"))
def _pf_ode(target, schedule, key, num, dim, start):
    score = score_fn(target)
    x = jax.random.normal(key, (num, dim))

    def body(x, k):
        return jax.vmap(lambda xi: _pf_ode_step(schedule, score, xi, k))(x), None

    x, _ = jax.lax.scan(body, x, jnp.arange(start, -1, -1))
    return x


# ---------------------------------------------------------------------------------------------------------------
# Annealed MCMC over the levels (kernels from lace_jax.samplers.mcmc)

MH_METHODS = ("mala", "hmc")


def _score_only_energy(target, x, k):
    # A surrogate whose gradient is −s(x, k) and whose value is NaN: lets the shared unadjusted kernels (ULA,
    # U-HMC), which only use gradients, run on score models; any use of the value shows up as NaN.
    s = jax.lax.stop_gradient(target.score(x, k))
    return -jnp.dot(s, x) + jax.lax.stop_gradient(jnp.dot(s, x)) + jnp.float32(jnp.nan)


def as_level_energy(target) -> Callable:
    """A time-dependent energy `e(x, k)` for the shared MCMC kernels: the composed energy itself, or for
    score-only targets a gradient-only surrogate (value NaN) usable by ULA and U-HMC only."""
    if isinstance(target, DiffusionModel):
        target = _as_target(target)
    if isinstance(target, ScoreSum):
        return Partial(_score_only_energy, target)
    return target


def step_sizes(schedule: Schedule, small: float, large: float) -> jax.Array:
    """Per-level step sizes `small + (large − small)·σ_k²` (σ_k² = 1 − ᾱ_k): large steps while the level
    density is wide, small ones near the data."""
    return jnp.float32(small) + (jnp.float32(large) - jnp.float32(small)) * schedule.sigmas ** 2


class AnnealedResult(NamedTuple):
    samples: jax.Array            # [B, D]
    acceptance_rate: jax.Array    # [N] per level, index = level k (1 for ULA/U-HMC; NaN: level not sampled)
    nfe: int                      # gradient evaluations per sample


def sample_annealed(key: jax.Array, target, schedule: Schedule, num: int, *, method: str = "hmc",
                    steps_per_level: int = 10, step_size=0.03, num_leapfrog: int = 3, damping: float = 0.5,
                    mass_sqrt: float = 1.0, ancestral: bool = True, dim: int = 2) -> AnnealedResult:
    """Annealed MCMC from N(0, I) through the levels N−1 → 0. With `ancestral`, each level k first takes one
    reverse-diffusion step to level k−1 (the last one to level 0's target) and then runs the MCMC there (the
    paper's image samplers); without it, only MCMC at levels N−1 … 0 (the paper's toy notebook).
    `step_size` is a scalar or per-level array [N] indexed by level. MALA/HMC need energy values: score models
    raise a TypeError; ULA/U-HMC work with both."""
    if method in MH_METHODS:
        require_energy(target, f"sample_annealed({method})")
    n = schedule.num_levels
    sizes = jnp.broadcast_to(jnp.asarray(step_size, jnp.float32), (n,))
    z, acc = _annealed(target, schedule, key, sizes, jnp.float32(damping), jnp.float32(mass_sqrt), num, dim,
                       method, int(steps_per_level), int(num_leapfrog), bool(ancestral))
    per_step = 1 if method in ("ula", "mala") else int(num_leapfrog)
    # per level: the ancestral step's score, the chain's initial energy/gradient at the level's target, then
    # one gradient per ULA/MALA step or per leapfrog step
    nfe = n * (1 + int(steps_per_level) * per_step) + (n if ancestral else 0)
    return AnnealedResult(z, acc, nfe)


@functools.partial(jax.jit, static_argnums=(6, 7, 8, 9, 10, 11))
def _annealed(target, schedule, key, sizes, damping, mass_sqrt, num, dim, method, steps, leapfrog, ancestral):
    energy_t, score = as_level_energy(target), score_fn(target)
    n = schedule.num_levels
    k0, key = jax.random.split(key)
    x = jax.random.normal(k0, (num, dim))

    def level(x, inp):
        k, kk = inp
        k_noise, k_mcmc = jax.random.split(kk)
        if ancestral:
            noise = jax.random.normal(k_noise, x.shape)
            x = jax.vmap(lambda xi, ni: _ancestral_step(schedule, score, xi, k, ni))(x, noise)
            target_level = jnp.maximum(k - 1, 0)
        else:
            target_level = k
        r = mcmc.mcmc_level(k_mcmc, energy_t, x, method=method, num_steps=steps,
                            step_size=sizes[target_level], num_leapfrog=leapfrog, damping=damping,
                            mass_sqrt=mass_sqrt, args=(target_level,))
        return r.z, (target_level, jnp.mean(r.acceptance_rate))

    ks = jnp.arange(n - 1, -1, -1)
    x, (levels, acc) = jax.lax.scan(level, x, (ks, jax.random.split(key, n)))
    # acceptance per level index (with `ancestral`, level 0 is visited twice: keep the mean)
    tot = jnp.zeros((n,)).at[levels].add(acc)
    cnt = jnp.zeros((n,)).at[levels].add(1.0)
    return x, jnp.where(cnt > 0, tot / jnp.maximum(cnt, 1.0), jnp.nan)


# ---------------------------------------------------------------------------------------------------------------
# Config-driven entry points (the `diffusion` branch for train.py / sample.py; see configs/diffusion_2d.py)

def schedule_from_config(config: dict) -> Schedule:
    name = config.get("schedule", "cosine")
    if name not in SCHEDULES:
        raise ValueError(f"config 'schedule': unknown {name!r}; expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](int(config.get("num_levels", 100)))


def train_from_config(config: dict, key: jax.Array, kinds: Sequence[str] = KINDS,
                      log: Callable[[str], None] = print) -> dict:
    """Train one model per (target, kind) of a `diffusion_2d` config. Returns
    `{target: {kind: {"model", "losses", "seconds"}}}`."""
    import time
    from lace_jax import densities2d

    sched = schedule_from_config(config)
    out = {}
    for ti, (tname, spec) in enumerate(sorted(config["targets"].items())):
        spec = dict(spec)
        target = densities2d.make(spec.pop("name"), **spec)
        out[tname] = {}
        for kind in kinds:
            k_init, k_train = jax.random.split(jax.random.fold_in(key, ti * 10 + KINDS.index(kind)))
            model = init_model(k_init, kind=kind, schedule=sched, **config["net"])
            t0 = time.time()
            res = train(model, target.sample, k_train, **config["train"])
            secs = time.time() - t0
            log(f"trained {tname}/{kind}: loss {res.losses[0]:.4f} -> {res.losses[-1]:.4f} in {secs:.1f} s")
            out[tname][kind] = {"model": res.model, "losses": res.losses, "seconds": secs}
    return out


def compose_from_config(models: dict, comp: dict, kind: str) -> Any:
    """The composed target of one `compositions` entry for models of one kind (raises TypeError where the
    parameterisation cannot express it)."""
    parts = [models[p][kind]["model"] for p in comp["parts"]]
    op = comp["op"]
    if op == "product":
        return product(*parts)
    if op == "mixture":
        return mixture(*parts, temperature=comp.get("temperature", 1.0))
    if op == "negation":
        return negation(*parts, weight=comp.get("weight", 0.3))
    raise ValueError(f"composition {comp.get('name')!r}: unknown op {op!r}; expected one of {sorted(COMPOSITIONS)}")


SAMPLERS = ("reverse", "pf_ode", "ula", "uhmc", "mala", "hmc")


def sample(key: jax.Array, method: str, target, schedule: Schedule, num: int, *, dim: int = 2,
           **options) -> AnnealedResult:
    """The one entry point over the diffusion-model samplers: `method` 'reverse' (`sample_reverse`), 'pf_ode'
    (`sample_pf_ode`) or an annealed MCMC method (`sample_annealed` with `options`). Returns an
    `AnnealedResult` (acceptance None for 'reverse' and 'pf_ode')."""
    if method not in SAMPLERS:
        raise ValueError(f"unknown diffusion sampler {method!r}; expected one of {', '.join(SAMPLERS)}")
    if method in ("reverse", "pf_ode"):
        r = (sample_reverse if method == "reverse" else sample_pf_ode)(key, target, schedule, int(num), dim=dim)
        return AnnealedResult(r.samples, None, r.nfe)
    return sample_annealed(key, target, schedule, int(num), method=method, dim=dim, **options)


def sample_from_config(target, schedule: Schedule, sampler: str, config: dict, key: jax.Array, num: int):
    """Run one named sampler of a `diffusion_2d` config's `samplers` section on a composed target (`sample`).
    Returns `(samples [num, D], acceptance [N] or None, nfe)`."""
    opts = dict(config["samplers"][sampler])
    if sampler not in ("reverse", "pf_ode"):
        opts["step_size"] = step_sizes(schedule, opts.pop("small"), opts.pop("large"))
        opts["ancestral"] = config.get("ancestral", True)
    r = sample(key, sampler, target, schedule, num, **opts)
    return r.samples, r.acceptance_rate, r.nfe
