"""Energies on latents, their algebra, and a small expression language.

An *energy* is a pytree-callable `e(z[D], *args) -> scalar` on ONE latent (lower = more likely, log p = −E).
Everything that varies between runs (network weights, targets y, weights, temperatures, anchors) is a pytree
*leaf*: energies are `jax.tree_util.Partial`s of module-level functions (or flax.struct callables), so a sampler
jitted once serves every attribute value, weight and seed without recompiling. Batch with `jax.vmap`, or use
`value`/`grad`/`value_and_grad` below, which also accept a `BatchedEnergy` (per-sample targets, see `stack`).

Extra positional arguments (e.g. a time `t` for annealed MCMC or energy diffusion) are forwarded by every
combinator; the leaf constructors here are time-independent and ignore them, so they mix with time-dependent
energies freely.

Numbers follow LACE (which calls −E "energy_neg"):
* discrete  `E = −(logit_y/τ − logsumexp(logits))`  (τ divides only the gathered logit, as LACE's `dis_temp`);
* continuous `E = ‖f − y‖²/(2σ²)`, σ = 0.1;  prior `E = ½‖z‖²`;
* LACE's OR `a*b`: energy_neg `log(20·e^a + e^b)`;  LACE's NOT `(-k)`: energy_neg `−α·e_k`,
  α = clamp(0.1/|e_k|, 0, 1) with α held constant under differentiation (computed from a detached copy);
* sequential editing: `λ_z(‖g(z) − g(z_a)‖² + ‖z − z_a‖²) + λ_logit Σ_j ‖f_j(z) − f_j(z_a)‖²` over the attributes
  not being edited, and with `reweight` the edited attributes' energies × 0.1, except the last one: × 10 if it is
  continuous, × 1 if discrete (LACE FFHQ `get_cond_energy(..., seq_indices, reweight=True)`).

The expression language (`parse`): `smile=1 & (glasses=1 | !age=0.6)`; precedence `!` > `&` > `|`, parentheses
group; a discrete value is a class index or a class name, a continuous value a float. `&` is `and_` (sum).
`|` is `or_` (−logsumexp(−E), temperature 1): symmetric, so `a | b` means the same as `b | a`; LACE's
weighted OR (20× on the left operand) is order dependent and stays available as `lace_or` and in the digit syntax.
`!` is `lace_not` (LACE's scaled negation): the plain negation −E of an energy that is unbounded above (a
continuous attribute's squared error) is unbounded below, and its gradient grows without limit; the scaled form
keeps LACE's bounded push away (|contribution| ≤ 0.1). Both can be swapped (`parse(..., or_op=..., not_op=...)`).
LACE's digit syntax (`0+1`, `0*1`, `0+(-1)`, `(0+1)*(2+(-3))`) is `parse_lace(expr, energies)` (also accepted
by `parse` when given a list of energies): digits index the list, operators apply strictly left to right with no
precedence, `+` AND, `*` LACE OR, `-` AND NOT (LACE's scaled negation).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import flax.struct
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from lace_jax import expressions
from lace_jax.expressions import syntax_error

Energy = Callable[..., jax.Array]

DISCRETE = "discrete"
CONTINUOUS = "continuous"


# --------------------------------------------------------------------------------------------------------------
# Helpers

def as_pytree_callable(fn: Callable) -> Callable:
    """`fn` itself if it is already a pytree-callable (a `Partial`, flax.struct dataclass, ...), else `Partial(fn)`
    — a leafless pytree whose function is static (a plain closure works, but its captured arrays are constants
    of any jit that sees it, and a new closure means a new compilation)."""
    if not callable(fn):
        raise TypeError(f"expected a callable, got {type(fn).__name__}")
    if isinstance(fn, Partial):
        return fn
    if jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(fn)):
        return Partial(fn)
    return fn


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


# --------------------------------------------------------------------------------------------------------------
# Leaf energies

def _zero_energy(z, *args):
    return jnp.zeros((), jnp.result_type(z, jnp.float32))


def zero() -> Energy:
    """The constant energy 0 (identity of `and_`)."""
    return Partial(_zero_energy)


def _prior_energy(z, *args):
    return 0.5 * jnp.sum(jnp.square(z))


def gaussian_prior() -> Energy:
    """The standard-normal prior, `E = ½‖z‖²`."""
    return Partial(_prior_energy)


def _discrete_energy(logits_fn, y, temperature, z, *args):
    logits = logits_fn(z)
    if jnp.ndim(logits) != 1:
        raise ValueError(f"discrete energy: the logits function must return logits [K] for one latent, got shape "
                         f"{jnp.shape(logits)}")
    return jax.nn.logsumexp(logits) - logits[y] / temperature


def discrete(logits_fn: Callable, y, temperature=1.0) -> Energy:
    """Discrete attribute, class `y`: `E = −(logit_y/τ − logsumexp(logits))` (LACE; τ only on the gathered logit).
    `logits_fn(z[D]) -> [K]`; `y` an integer (a float such as LACE's label arrays is truncated to int)."""
    y = jnp.asarray(y)
    y = y.astype(jnp.int32) if not jnp.issubdtype(y.dtype, jnp.integer) else y
    if y.ndim != 0:
        raise ValueError(f"discrete: y must be one class index (scalar) per energy, got shape {y.shape} "
                         "(per-sample targets: build one energy per sample and `stack` them)")
    return Partial(_discrete_energy, as_pytree_callable(logits_fn), y, _f32(temperature))


def _continuous_energy(pred_fn, y, sigma, z, *args):
    f = pred_fn(z)
    return jnp.sum(jnp.square(f - y)) * 0.5 / jnp.square(sigma)


def continuous(pred_fn: Callable, y, sigma=0.1) -> Energy:
    """Continuous attribute, target `y`: `E = ‖f(z) − y‖²/(2σ²)` (LACE: σ = 0.1). `pred_fn(z[D])` returns the
    prediction (`[1]` for a LACE head, or any shape `y` broadcasts against)."""
    return Partial(_continuous_energy, as_pytree_callable(pred_fn), _f32(y), _f32(sigma))


def _anchored_energy(g, z_anchor, weight, z, *args):
    z_a = jax.lax.stop_gradient(z_anchor)
    d = jnp.sum(jnp.square(z - z_a))
    if g is not None:
        d = jnp.sum(jnp.square(g(z) - jax.lax.stop_gradient(g(z_a)))) + d
    return weight * d


def anchored(g: Callable | None, z_anchor, weight=1.0) -> Energy:
    """Sequential-editing proximity term `λ(‖g(z) − g(z_a)‖² + ‖z − z_a‖²)` (LACE `reg_z`; `g=None` keeps only the
    latent distance). The anchor is a constant (no gradient flows into it)."""
    return Partial(_anchored_energy, None if g is None else as_pytree_callable(g), _f32(z_anchor), _f32(weight))


def _anchored_logits_energy(fns, z_anchor, weight, z, *args):
    z_a = jax.lax.stop_gradient(z_anchor)
    total = jnp.zeros((), jnp.float32)
    for f in fns:
        total = total + jnp.sum(jnp.square(f(z) - jax.lax.stop_gradient(f(z_a))))
    return weight * total


def anchored_logits(fns: Sequence[Callable], z_anchor, weight=1.0) -> Energy:
    """Sequential-editing term `λ Σ_j ‖f_j(z) − f_j(z_a)‖²` over classifier outputs (LACE `reg_logits` with
    `calc_logits_dist`, over the attributes *not* being edited)."""
    fns = tuple(as_pytree_callable(f) for f in fns)
    if not fns:
        raise ValueError("anchored_logits: needs at least one classifier function")
    return Partial(_anchored_logits_energy, fns, _f32(z_anchor), _f32(weight))


# --------------------------------------------------------------------------------------------------------------
# Combinators (forward extra positional args, e.g. a time t)

def _check_energies(name: str, es: Sequence) -> tuple:
    if not es:
        raise ValueError(f"{name}: needs at least one energy")
    for i, e in enumerate(es):
        if not callable(e):
            raise TypeError(f"{name}: argument {i} is a {type(e).__name__}, not an energy (callable)")
    return tuple(as_pytree_callable(e) for e in es)


def _and_energy(es, z, *args):
    out = es[0](z, *args)
    for e in es[1:]:
        out = out + e(z, *args)
    return out


def and_(*es: Energy) -> Energy:
    """Conjunction (product of experts): `E = Σ E_i`."""
    es = _check_energies("and_", es)
    return es[0] if len(es) == 1 else Partial(_and_energy, es)


def _or_energy(es, temperature, z, *args):
    vals = jnp.stack([e(z, *args) for e in es])
    return -temperature * jax.nn.logsumexp(-vals / temperature)


def or_(*es: Energy, temperature=1.0) -> Energy:
    """Disjunction (mixture of experts): `E = −T·logsumexp(−E_i/T)`; symmetric in its arguments."""
    es = _check_energies("or_", es)
    return Partial(_or_energy, es, _f32(temperature))


def _lace_or_energy(a, b, log_weight, z, *args):
    return -jnp.logaddexp(log_weight - a(z, *args), -b(z, *args))


def lace_or(a: Energy, b: Energy, weight=20.0) -> Energy:
    """LACE's OR (`a*b` in `logical_comb`): energy_neg `log(20·e^{−E_a} + e^{−E_b})`, i.e.
    `E = −log(w·e^{−E_a} + e^{−E_b})` with w = 20 on the LEFT operand (computed stably)."""
    a, b = _check_energies("lace_or", (a, b))
    return Partial(_lace_or_energy, a, b, jnp.log(_f32(weight)))


def _scaled_energy(e, weight, z, *args):
    return weight * e(z, *args)


def not_(e: Energy, weight=1.0) -> Energy:
    """Plain negation with a weight: `E = −w·E_e`."""
    (e,) = _check_energies("not_", (e,))
    return Partial(_scaled_energy, e, -_f32(weight))


def _lace_not_energy(e, scale, z, *args):
    v = e(z, *args)
    alpha = jnp.clip(scale / jnp.abs(jax.lax.stop_gradient(v)), 0.0, 1.0)
    return -alpha * v


def lace_not(e: Energy, scale=0.1) -> Energy:
    """LACE's NOT (`(-k)` in `logical_comb`): `E = −α·E_e`, α = clamp(0.1/|E_e|, 0, 1) held constant under
    differentiation. |contribution| ≤ 0.1 while the gradient is the negated one scaled by α."""
    (e,) = _check_energies("lace_not", (e,))
    return Partial(_lace_not_energy, e, _f32(scale))


def _neg_log1mexp(a):
    """−log(1 − exp(a)) for a < 0, accurate at both ends (expm1 near 0, log1p far from it)."""
    return -jnp.where(a > -0.6931472, jnp.log(-jnp.expm1(jnp.minimum(a, -1e-30))), jnp.log1p(-jnp.exp(a)))


def _complement_energy(e, eps, z, *args):
    # E_e + eps keeps the energy finite (≤ −log eps) and its gradient alive where the atom is certain (E_e → 0);
    # a clip of exp(−E_e) at 1 − eps had zero gradient there, so a confident classifier never let go of c
    return _neg_log1mexp(-(e(z, *args) + eps))


def _complement_discrete_energy(logits_fn, y, temperature, eps, z, *args):
    logits = logits_fn(z)
    if jnp.ndim(logits) != 1:
        raise ValueError(f"complement: the logits function must return logits [K] for one latent, got shape "
                         f"{jnp.shape(logits)}")
    lse = jax.nn.logsumexp(logits)
    # τ = 1: −log(1 − p_y) = logsumexp(l) − logsumexp(l_{k≠y}), exact in float32 however sure the classifier is
    others = jnp.where(jnp.arange(logits.shape[0]) == y, -jnp.inf, logits)
    exact = lse - jax.nn.logsumexp(others)
    # LACE's τ ≠ 1 (τ only on the gathered logit) is no probability: the generic form on E_e
    generic = _neg_log1mexp(-(lse - logits[y] / temperature + eps))
    return jnp.where(temperature == 1.0, exact, generic)


def complement(e: Energy, eps=1e-6) -> Energy:
    """Probabilistic NOT: `E = −log(1 − exp(−E_e))`. For a discrete atom (E_e = −log p(c|z)) this is exactly
    −log p(¬c|z), computed from the logits as logsumexp(l) − logsumexp(l_{k≠y}) so that it stays exact (and its
    gradient alive) when the classifier is certain; for an AND of atoms it is −log(1 − Π p) (independent
    attributes), with E_e + eps in place of E_e (finite, ≤ −log eps). Bounded below by 0 and steep where the
    negated condition holds, unlike plain negation (unbounded below: the sampler runs off the prior's support) or
    LACE's bounded scaled NOT (a weak push)."""
    (e,) = _check_energies("complement", (e,))
    if isinstance(e, Partial) and e.func is _discrete_energy:
        logits_fn, y, temperature = e.args
        return Partial(_complement_discrete_energy, logits_fn, y, temperature, _f32(eps))
    return Partial(_complement_energy, e, _f32(eps))


NOT_OPS = {"lace": lambda e: lace_not(e), "complement": lambda e: complement(e), "plain": lambda e: not_(e)}


def not_op(name: str) -> Callable:
    """The NOT operator named in a world config (`not_op`): 'lace' (LACE's bounded scaled NOT, `parse`'s default),
    'complement' (probabilistic), 'plain' (−E)."""
    if name not in NOT_OPS:
        raise ValueError(f"unknown not_op {name!r}; expected one of {', '.join(NOT_OPS)}")
    return NOT_OPS[name]


def weighted(e: Energy, weight) -> Energy:
    """`E = w·E_e` (LACE's per-attribute weights)."""
    (e,) = _check_energies("weighted", (e,))
    return Partial(_scaled_energy, e, _f32(weight))


def _tempered_energy(e, temperature, z, *args):
    return e(z, *args) / temperature


def tempered(e: Energy, temperature) -> Energy:
    """`E = E_e / T` (T > 1 flattens, T < 1 sharpens)."""
    (e,) = _check_energies("tempered", (e,))
    return Partial(_tempered_energy, e, _f32(temperature))


def _shift_energy(e, c, z, *args):
    return e(z, *args) + c


def shift(e: Energy, c) -> Energy:
    """`E = E_e + c` (a constant offset: same distribution, different normaliser)."""
    (e,) = _check_energies("shift", (e,))
    return Partial(_shift_energy, e, _f32(c))


def with_prior(e: Energy) -> Energy:
    """The full latent energy `½‖z‖² + E_e` (samplers other than the PF-ODE take this)."""
    return and_(gaussian_prior(), e)


# --------------------------------------------------------------------------------------------------------------
# Batching

@flax.struct.dataclass
class BatchedEnergy:
    """A batch of energies that share structure: `energy` is their pytree with a leading batch axis on the leaves
    that differ (axes 0) and shared leaves unbatched (None). Call on `z[B, D]` → `[B]`; extra args are shared."""

    energy: Any
    axes: tuple = flax.struct.field(pytree_node=False, default=())

    def in_axes(self):
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(self.energy), list(self.axes))

    def __call__(self, z: jax.Array, *args) -> jax.Array:
        return jax.vmap(lambda e, zi: e(zi, *args), in_axes=(self.in_axes(), 0))(self.energy, z)

    def grad(self, z: jax.Array, *args) -> jax.Array:
        return jax.vmap(lambda e, zi: jax.grad(e)(zi, *args), in_axes=(self.in_axes(), 0))(self.energy, z)

    def value_and_grad(self, z: jax.Array, *args) -> tuple[jax.Array, jax.Array]:
        return jax.vmap(lambda e, zi: jax.value_and_grad(e)(zi, *args),
                        in_axes=(self.in_axes(), 0))(self.energy, z)

    def take(self, index) -> Any:
        """Sample `index`'s energy (a scalar index: a plain energy) or a sub-batch (an index vector: a
        `BatchedEnergy`); shared leaves stay shared. Works on traced indices (inside jit/vmap)."""
        index = jnp.asarray(index)
        leaves = [leaf if ax is None else jnp.asarray(leaf)[index]
                  for leaf, ax in zip(jax.tree_util.tree_leaves(self.energy), self.axes)]
        energy = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(self.energy), leaves)
        return energy if index.ndim == 0 else BatchedEnergy(energy=energy, axes=self.axes)

    @property
    def batch_size(self) -> int:
        for leaf, ax in zip(jax.tree_util.tree_leaves(self.energy), self.axes):
            if ax == 0:
                return int(jnp.shape(leaf)[0])
        raise ValueError("BatchedEnergy: no batched leaf (all energies identical); use the single energy instead")


def stack(energies: Sequence[Energy]) -> BatchedEnergy:
    """One energy per sample (same structure, e.g. `[discrete(f, y_i) for y_i in ys]`) → a `BatchedEnergy`.
    Leaves that are the same object in every energy (network weights) stay shared; the others are stacked."""
    es = [as_pytree_callable(e) for e in energies]
    if not es:
        raise ValueError("stack: needs at least one energy")
    flat = [jax.tree_util.tree_flatten(e) for e in es]
    treedef = flat[0][1]
    for i, (_, td) in enumerate(flat):
        if td != treedef:
            raise ValueError(f"stack: energy {i} has a different structure than energy 0:\n  {td}\nvs\n  {treedef}")
    leaves, axes = [], []
    for j, leaf0 in enumerate(flat[0][0]):
        column = [f[0][j] for f in flat]
        if all(c is leaf0 for c in column):
            leaves.append(leaf0)
            axes.append(None)
        else:
            shapes = {jnp.shape(c) for c in column}
            if len(shapes) != 1:
                raise ValueError(f"stack: leaf {j} has different shapes across energies: {sorted(shapes)}")
            leaves.append(jnp.stack([jnp.asarray(c) for c in column]))
            axes.append(0)
    return BatchedEnergy(energy=jax.tree_util.tree_unflatten(treedef, leaves), axes=tuple(axes))


def per_sample(build: Callable[..., Energy], *batched: Any) -> BatchedEnergy:
    """`stack([build(a[0][i], a[1][i], ...) for i])`: per-sample targets, e.g. `per_sample(lambda y: discrete(f, y),
    ys)`. `build` must reuse the same weight objects for every sample so that they stay shared."""
    if not batched:
        raise ValueError("per_sample: needs at least one batched argument")
    n = {len(a) for a in batched}
    if len(n) != 1:
        raise ValueError(f"per_sample: batched arguments have different lengths {sorted(n)}")
    return stack([build(*(a[i] for a in batched)) for i in range(n.pop())])


def value(energy, z: jax.Array, *args) -> jax.Array:
    """Energies of a batch `z[B, D]` → `[B]`, for a per-sample energy (vmapped over z) or a `BatchedEnergy`."""
    if isinstance(energy, BatchedEnergy):
        return energy(z, *args)
    return jax.vmap(lambda zi: energy(zi, *args))(z)


def _summed(energy, args: tuple) -> Callable:
    """`z[B, D] -> (Σ_b E(z_b), E[B])`. Samples are independent, so the gradient of the sum IS the per-sample
    gradient, computed in one batched backward pass — measurably cheaper than vmapping per-sample gradients
    (1.44× on the LACE CIFAR drift at batch 64, benchmarks/sampling.py)."""
    def f(z):
        e = jax.vmap(lambda zi: energy(zi, *args))(z)
        return jnp.sum(e), e
    return f


def grad(energy, z: jax.Array, *args) -> jax.Array:
    """∇_z E for a batch `z[B, D]` → `[B, D]` (per-sample energy or `BatchedEnergy`)."""
    if isinstance(energy, BatchedEnergy):
        return energy.grad(z, *args)
    return jax.grad(_summed(energy, args), has_aux=True)(z)[0]


def value_and_grad(energy, z: jax.Array, *args) -> tuple[jax.Array, jax.Array]:
    """`(E [B], ∇_z E [B, D])` for a batch (per-sample energy or `BatchedEnergy`)."""
    if isinstance(energy, BatchedEnergy):
        return energy.value_and_grad(z, *args)
    g, e = jax.grad(_summed(energy, args), has_aux=True)(z)
    return e, g


# --------------------------------------------------------------------------------------------------------------
# Attributes and LACE's conditional / sequential-editing energies

@dataclasses.dataclass(frozen=True)
class Attribute:
    """What `parse` and the LACE builders need to know about one attribute.

    `kind`: 'discrete' (`fn(z) -> logits [K]`) or 'continuous' (`fn(z) -> prediction`, `[1]` for a LACE head).
    `fn` should be a pytree-callable (e.g. `LatentClassifier.select(k)`) so its weights are leaves.
    Discrete: `num_classes` (or `classes`, names usable in expressions) and `temperature` (LACE `dis_temp`).
    Continuous: `sigma` (LACE 0.1) and an optional inclusive `value_range` checked by `parse`."""

    kind: str
    fn: Callable
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None
    sigma: float = 0.1
    temperature: float = 1.0

    def __post_init__(self):
        if self.kind not in (DISCRETE, CONTINUOUS):
            raise ValueError(f"Attribute: kind must be {DISCRETE!r} or {CONTINUOUS!r}, got {self.kind!r}")
        if not callable(self.fn):
            raise TypeError(f"Attribute: fn must be callable, got {type(self.fn).__name__}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if self.num_classes is None:
                object.__setattr__(self, "num_classes", len(self.classes))
            elif self.num_classes != len(self.classes):
                raise ValueError(f"Attribute: num_classes={self.num_classes} but {len(self.classes)} class names")
        if self.kind == DISCRETE and (self.num_classes is None or self.num_classes < 2):
            raise ValueError(f"Attribute: a discrete attribute needs num_classes >= 2 (or class names), got "
                             f"{self.num_classes!r}")
        if self.value_range is not None:
            lo, hi = (float(v) for v in self.value_range)
            if not lo <= hi:
                raise ValueError(f"Attribute: value_range {self.value_range} is empty")
            object.__setattr__(self, "value_range", (lo, hi))

    @classmethod
    def discrete(cls, fn: Callable, num_classes: int | None = None, *, classes: Sequence[str] | None = None,
                 temperature: float = 1.0) -> "Attribute":
        return cls(DISCRETE, fn, num_classes=num_classes, classes=None if classes is None else tuple(classes),
                   temperature=temperature)

    @classmethod
    def continuous(cls, fn: Callable, *, sigma: float = 0.1,
                   value_range: tuple[float, float] | None = None) -> "Attribute":
        return cls(CONTINUOUS, fn, sigma=sigma, value_range=value_range)

    def energy(self, y, temperature=None) -> Energy:
        """This attribute's conditional energy for target `y` (temperature overrides `self.temperature`)."""
        if self.kind == DISCRETE:
            return discrete(self.fn, y, self.temperature if temperature is None else temperature)
        return continuous(self.fn, y, self.sigma)


def lace_seq_weights(kinds: Sequence[str]) -> tuple[float, ...]:
    """LACE's sequential-editing reweighting (FFHQ `get_cond_energy(..., seq_indices, reweight=True)`) for the kinds
    of the selected attributes, in `seq_indices` order: 0.1 for every one but the last; the last (the attribute
    being edited now) gets 10 if it is continuous, 1 if discrete."""
    kinds = list(kinds)
    if not kinds:
        return ()
    return tuple([0.1] * (len(kinds) - 1) + [10.0 if kinds[-1] == CONTINUOUS else 1.0])


def lace_conditional(attributes: Sequence[Attribute], ys, *, expr: str = "", seq_indices: Sequence[int] = (),
                     reweight: bool = True, dis_temp=None) -> Energy:
    """LACE's conditional energy `E_cond = −get_cond_energy(z, ys, seq_indices, reweight, dis_temp)` with the
    CCF's `expr` (empty: AND = sum; else LACE's digit syntax over the selected attributes).

    `ys` holds one target per *selected* attribute (all attributes, or those of `seq_indices`, in that order).
    `dis_temp` (if given) overrides every discrete attribute's temperature, as LACE's argument does."""
    idx = list(seq_indices) if len(seq_indices) > 0 else list(range(len(attributes)))
    for i in idx:
        if not 0 <= i < len(attributes):
            raise ValueError(f"lace_conditional: seq index {i} out of range for {len(attributes)} attributes")
    sel = [attributes[i] for i in idx]
    ys = list(ys)
    if len(ys) != len(sel):
        raise ValueError(f"lace_conditional: got {len(ys)} targets for {len(sel)} selected attributes")
    es = [a.energy(y, dis_temp) for a, y in zip(sel, ys)]
    if len(seq_indices) > 0 and reweight:
        es = [weighted(e, w) for e, w in zip(es, lace_seq_weights([a.kind for a in sel]))]
    return parse_lace(expr, es) if expr else and_(*es)


def lace_sequential(attributes: Sequence[Attribute], ys, *, z_anchor, g: Callable | None, reg_z=0.0,
                    reg_logits=0.0, seq_indices: Sequence[int] = (), reweight: bool = True, dis_temp=None,
                    expr: str = "") -> Energy:
    """LACE's sequential-editing conditional energy (what `VPODE` / `sample_q_sgld` differentiate, negated):
    `lace_conditional(...) + reg_z(‖g(z) − g(z_a)‖² + ‖z − z_a‖²) + reg_logits Σ_{j ∉ seq} ‖f_j(z) − f_j(z_a)‖²`.
    A term is present when its coefficient is > 0 (a Python number: it fixes the energy's structure)."""
    terms = [lace_conditional(attributes, ys, expr=expr, seq_indices=seq_indices, reweight=reweight,
                              dis_temp=dis_temp)]
    if reg_z > 0:
        terms.append(anchored(g, z_anchor, reg_z))
    if reg_logits > 0:
        remain = [a.fn for i, a in enumerate(attributes) if i not in set(seq_indices)]
        if remain:
            terms.append(anchored_logits(remain, z_anchor, reg_logits))
    return and_(*terms)


# --------------------------------------------------------------------------------------------------------------
# Expressions

_LACE_OPS = "+-*"


def parse_lace(expr: str, energies: Sequence[Energy]) -> Energy:
    """LACE's `logical_comb` syntax over a list of energies (our sign: lower = more likely).

    Digits (one character each) index `energies`; `+` is AND (sum), `*` LACE's OR (`lace_or`, weight 20 on the
    accumulated left side), `-` AND NOT with LACE's scaled negation (`(-k)` = `lace_not(e_k)`); operators apply
    strictly left to right with no precedence, parentheses group, and a group may start with an operator (applied
    to 0, e.g. `(-1)`). Whitespace is ignored. `'0+1*2'` = lace_or(e0 + e1, e2)."""
    if not isinstance(expr, str):
        raise TypeError(f"parse_lace: expr must be a string, got {type(expr).__name__}")
    es = [as_pytree_callable(e) for e in energies]
    toks = [(i, c) for i, c in enumerate(expr) if not c.isspace()]
    end = len(expr)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (end, "")

    def apply(op, acc, val):
        if op == "+":
            return val if acc is None else and_(acc, val)
        if op == "-":
            neg = lace_not(val)
            return neg if acc is None else and_(acc, neg)
        return lace_or(zero() if acc is None else acc, val)

    def item():
        nonlocal pos
        i, c = peek()
        if c.isdigit():
            pos += 1
            j, c2 = peek()
            if c2.isdigit():
                raise syntax_error(expr, i, "LACE syntax indexes energies with single digits; found a number")
            k = int(c)
            if k >= len(es):
                raise syntax_error(expr, i, f"energy index {k} out of range (there are {len(es)} energies)")
            return es[k]
        if c == "(":
            pos += 1
            v = group()
            j, c2 = peek()
            if c2 != ")":
                raise syntax_error(expr, j, "expected ')' to close the '(' at column " f"{i + 1}")
            pos += 1
            return v
        if c == "":
            raise syntax_error(expr, i, "unexpected end of expression, expected a digit or '('")
        raise syntax_error(expr, i, f"unexpected {c!r}, expected a digit or '('")

    def group():
        nonlocal pos
        acc, op = None, "+"
        i, c = peek()
        if c and c in _LACE_OPS:      # leading operator: applied to LACE's initial 0
            op = c
            pos += 1
        while True:
            acc = apply(op, acc, item())
            i, c = peek()
            if c and c in _LACE_OPS:
                op = c
                pos += 1
                continue
            return acc

    if not toks:
        raise syntax_error(expr, 0, "empty expression")
    result = group()
    i, c = peek()
    if c:
        raise syntax_error(expr, i, f"unexpected {c!r}" + (" (no matching '(')" if c == ")" else ""))
    return result


def _reduce(op: Callable, items: list) -> Energy:
    if len(items) == 1:
        return items[0]
    if op is or_ or op is and_:
        return op(*items)
    out = items[0]
    for e in items[1:]:
        out = op(out, e)
    return out


def parse(expr: str, attributes: Mapping[str, Attribute] | Sequence[Energy], *, or_op: Callable = or_,
          not_op: Callable = lace_not) -> Energy:
    """Build an energy from text.

    With a mapping `name → Attribute`: `smile=1 & (glasses=1 | !age=0.6)`; precedence `!` > `&` > `|`,
    parentheses group, `==`/`&&`/`||` are accepted as `=`/`&`/`|`. A discrete value is a class index or a class
    name (bare or quoted), a continuous value a number. `&` → `and_`, `|` → `or_op` (default `or_`), `!` →
    `not_op` (default `lace_not`); see the module docstring for why. The text is parsed by
    `lace_jax.expressions.parse` (the one parser of the language) and its tree folded into an energy.
    With a list of energies: LACE's digit syntax (`parse_lace`). Malformed input raises ValueError with the
    expression and a caret under the offending column."""
    if not isinstance(expr, str):
        raise TypeError(f"parse: expr must be a string, got {type(expr).__name__}")
    if isinstance(attributes, (list, tuple)):
        return parse_lace(expr, attributes)
    if not isinstance(attributes, Mapping):
        raise TypeError(f"parse: attributes must be a mapping name -> Attribute (or a list of energies for LACE's "
                        f"digit syntax), got {type(attributes).__name__}")
    if not expressions.looks_like_lace(expr):
        for name, a in attributes.items():
            if not isinstance(a, Attribute):
                raise TypeError(f"parse: attributes[{name!r}] is a {type(a).__name__}, not an Attribute")
    return from_tree(expressions.parse(expr, attributes), attributes, or_op=or_op, not_op=not_op)


def from_tree(tree: Any, attributes: Mapping[str, Attribute], *, or_op: Callable = or_,
              not_op: Callable = lace_not) -> Energy:
    """The energy of an `expressions` tree: atoms → `Attribute.energy`, `&` → `and_`, `|` → `or_op`,
    `!` → `not_op`."""
    return expressions.fold(tree, atom=lambda a: attributes[a.name].energy(a.value), not_=not_op,
                            and_=lambda items: _reduce(and_, items), or_=lambda items: _reduce(or_op, items))


__all__ = ["Energy", "DISCRETE", "CONTINUOUS", "as_pytree_callable", "zero", "gaussian_prior", "discrete",
           "continuous", "anchored", "anchored_logits", "and_", "or_", "lace_or", "not_", "lace_not", "complement",
           "NOT_OPS", "not_op", "weighted",
           "tempered", "shift", "with_prior", "BatchedEnergy", "stack", "per_sample", "value", "grad",
           "value_and_grad", "Attribute", "lace_seq_weights", "lace_conditional", "lace_sequential", "parse_lace",
           "parse", "from_tree"]
