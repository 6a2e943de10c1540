"""An energy diffusion model over a generator's w space, composed with LACE latent-classifier energies.

The latent-space variant of Du et al.'s composition (issue 8): instead of LACE's fixed N(0, I) prior on z pushed
through the mapping, a diffusion model (`lace_jax.diffusion`, energy parameterisation) *learns* the density of
w = mapping(z); a condition is composed with it as a product of experts and sampled directly in w by annealed MCMC
(or reverse diffusion of the summed score, the baseline), then rendered by the synthesis network.

* The model works on standardised coordinates x = (w − μ)/s (per-dimension mean and std of the training w's,
  kept with the checkpoint as a `Standardizer`).
* Classifier term at level k (our choice, documented because the paper composes trained diffusion models, not a
  clean-data classifier): `ᾱ_k · λ · E_c(μ + s·x/√ᾱ_k)`. x/√ᾱ_k is the level-k point at data scale (its mean is
  x₀); the factor ᾱ_k fades the classifier out where the level density is mostly noise, so its gradient
  (∝ √ᾱ_k) stays bounded at the noisiest levels; at level 0 (ᾱ ≈ 1) it is LACE's energy, weight λ.
  It composes with the model's level energy through `energy.and_`, like any other energy.
* `w_world(world)` is the same world with its classifiers reading w directly and a renderer from w, so the
  workflow's `render`/`judge` and the evaluation functions apply unchanged to w samples.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from lace_jax import diffusion
from lace_jax import energy as en

CHECKPOINT_KIND = "w_diffusion"


# --------------------------------------------------------------------------------------------------------------
# Data: w = mapping(z) and its standardisation

@flax.struct.dataclass
class Standardizer:
    """Per-dimension affine map between w and the model's coordinates x = (w − mean)/std."""
    mean: jax.Array
    std: jax.Array

    @classmethod
    def fit(cls, w: np.ndarray) -> "Standardizer":
        w = np.asarray(w, np.float64)
        return cls(jnp.asarray(w.mean(0), jnp.float32), jnp.asarray(np.maximum(w.std(0), 1e-6), jnp.float32))

    def to_x(self, w: jax.Array) -> jax.Array:
        return (w - self.mean) / self.std

    def to_w(self, x: jax.Array) -> jax.Array:
        return self.mean + self.std * x


@jax.jit
def _map_rows(mapping: Any, z: jax.Array) -> jax.Array:
    # one compilation per mapping structure and batch shape (the mapping's weights are arguments)
    return jax.vmap(mapping)(z)


def w_samples(world: Any, key: jax.Array, num: int, batch: int = 4096) -> np.ndarray:
    """`num` latents w = mapping(z), z ~ N(0, I), of a world whose classifiers read w (`world.mapping`)."""
    if world.mapping is None:
        raise ValueError(f"world {world.name!r} has no z → w mapping (classifier_space must be 'w')")
    fn = _map_rows
    out = []
    for i in range(0, int(num), batch):
        n = min(batch, int(num) - i)
        z = jax.random.normal(jax.random.fold_in(key, i), (n, world.latent_dim), jnp.float32)
        out.append(np.asarray(fn(world.mapping, z)))
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------------------------
# The world seen from w

@flax.struct.dataclass
class WRender:
    """`w[B, w_dim] -> NCHW images`: the synthesis network with w on every layer (noise as configured)."""
    variables: Any
    config: Any = flax.struct.field(pytree_node=False, default=None)
    noise_mode: str = flax.struct.field(pytree_node=False, default="const")

    def __call__(self, w: jax.Array) -> jax.Array:
        from lace_jax.models import stylegan2 as sg

        ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], self.config.num_ws, w.shape[1]))
        return sg.synthesis(self.config, self.variables, ws, noise_mode=self.noise_mode)


def _strip_mapping(fn: Any) -> Any:
    from lace_jax.models.classifiers import ProductOfExperts

    if isinstance(fn, ProductOfExperts):
        raise ValueError("w_world: the world's discrete attributes use the product of w and z classifiers "
                         "(classifier_space 'wz'); a z classifier cannot read w — set classifier_space='w'")
    if not hasattr(fn, "g") or not hasattr(fn, "replace"):
        raise TypeError(f"w_world: classifier {type(fn).__name__} does not expose its z → w map (`g`)")
    return fn.replace(g=None)


def w_world(world: Any) -> Any:
    """The world with latents w instead of z: classifiers read w, `render` synthesises from w, no mapping.
    Needs a world whose classifiers read w = mapping(z) and whose renderer is a `GeneratorRender` with ψ = 1
    (a truncated w would not be what the diffusion model learned)."""
    from lace_jax.worlds import GeneratorRender

    if world.mapping is None:
        raise ValueError(f"w_world: world {world.name!r} classifies z, not w (set classifier_space='w')")
    if not isinstance(world.render, GeneratorRender):
        raise ValueError(f"w_world: world {world.name!r} has no StyleGAN2 renderer")
    if float(world.truncation_psi) != 1.0:
        raise ValueError(f"w_world: truncation ψ = {world.truncation_psi}; the w-space model is trained on "
                         "untruncated w (ψ = 1)")
    attrs = {n: dataclasses.replace(a, fn=_strip_mapping(a.fn)) for n, a in world.attributes.items()}
    g_cfg = world.render.config
    render = WRender(variables=world.render.variables, config=g_cfg, noise_mode=world.render.noise_mode)
    return dataclasses.replace(world, name=f"{world.name}-w", attributes=attrs, latent_dim=int(g_cfg.w_dim),
                               render=render, mapping=None)


# --------------------------------------------------------------------------------------------------------------
# Composition with classifier energies

def _noisy_classifier_energy(classifier, stats, alphas_cumprod, weight, x, k):
    acp = alphas_cumprod[jnp.asarray(k, jnp.int32)]
    w = stats.to_w(x / jnp.sqrt(acp))
    return weight * acp * classifier(w)


def classifier_term(classifier: en.Energy, stats: Standardizer, schedule: diffusion.Schedule,
                    weight: float = 1.0) -> en.Energy:
    """The level energy `e(x, k) = ᾱ_k·λ·E_c(μ + s·x/√ᾱ_k)` of a classifier energy `E_c(w)` (module docstring)."""
    return Partial(_noisy_classifier_energy, classifier, stats, schedule.alphas_cumprod, jnp.float32(weight))


def conditioned(model: diffusion.DiffusionModel, classifier: en.Energy, stats: Standardizer,
                weight: float = 1.0) -> en.Energy:
    """The product p_k(x)·p(c | x)^λ as an energy over levels: `and_(model's level energy, classifier_term)`."""
    return en.and_(diffusion.level_energy(model), classifier_term(classifier, stats, model.schedule, weight))


@dataclasses.dataclass(frozen=True)
class WSampleResult:
    """Samples in w, with the sampler's cost and acceptance."""
    w: np.ndarray                     # [N, w_dim]
    nfe: int                          # gradient evaluations per sample
    acceptance: float | None          # mean over levels (MALA/HMC), None otherwise
    seconds: float                    # wall time including compilation


def sample_w(target: Any, model: diffusion.DiffusionModel, stats: Standardizer, key: jax.Array, num: int, *,
             method: str = "reverse", steps_per_level: int = 1, step_size: Any = 0.01, num_leapfrog: int = 2,
             damping: float = 0.5, ancestral: bool = True) -> WSampleResult:
    """Draw `num` latents w from a composed target over the model's levels: `method` 'reverse' (ancestral
    reverse diffusion with the target's score), 'pf_ode' (its deterministic probability-flow ODE) or an annealed
    MCMC method of `diffusion.sample_annealed`."""
    t0 = time.time()
    opts = {} if method in ("reverse", "pf_ode") else dict(
        steps_per_level=steps_per_level, step_size=step_size, num_leapfrog=num_leapfrog, damping=damping,
        ancestral=ancestral)
    r = diffusion.sample(key, method, target, model.schedule, int(num), dim=int(model.net.x_dim), **opts)
    x, nfe = r.samples, r.nfe
    acc = float(np.nanmean(np.asarray(r.acceptance_rate))) if method in diffusion.MH_METHODS else None
    w = np.asarray(stats.to_w(x))
    return WSampleResult(w=w, nfe=int(nfe), acceptance=acc, seconds=time.time() - t0)


# --------------------------------------------------------------------------------------------------------------
# Training and checkpoints

def init_from_config(config: Mapping[str, Any], x_dim: int, key: jax.Array) -> diffusion.DiffusionModel:
    """A fresh energy-parameterised model of the config's `net`, schedule and level count."""
    sched = diffusion.schedule_from_config(config)
    return diffusion.init_model(key, kind=str(config.get("parameterisation", diffusion.ENERGY)), schedule=sched,
                                x_dim=int(x_dim), **dict(config["net"]))


def train_w_diffusion(config: Mapping[str, Any], workdir: str | Path | None = None,
                      log: Callable[[str], None] = print, world: Any = None) -> dict:
    """Train the w-space diffusion model of a `diffusion_latent` config on `num_train` latents w = mapping(z)
    of the config's `world`; save it to `<workdir>/model` (orbax, with the standardiser). Returns a summary."""
    from lace_jax.worlds import world_from_config

    world = world_from_config(dict(config["world"])) if world is None else world
    key = jax.random.PRNGKey(int(config.get("seed", 0)))
    k_data, k_init, k_train = jax.random.split(key, 3)
    t0 = time.time()
    w = w_samples(world, k_data, int(config["num_train"]))
    stats = Standardizer.fit(w)
    x = np.asarray(stats.to_x(jnp.asarray(w)))
    log(f"w-diffusion: {len(w)} training latents w (dim {w.shape[1]}) in {time.time() - t0:.1f} s")
    model = init_from_config(config, w.shape[1], k_init)
    t1 = time.time()
    res = diffusion.train(model, x, k_train, log=log, **dict(config["train"]))
    secs = time.time() - t1
    summary = {"num_train": int(len(w)), "w_dim": int(w.shape[1]), "steps": int(config["train"]["steps"]),
               "loss_first": float(res.losses[0]), "loss_last": float(res.losses[-1]),
               "train_seconds": float(secs), "losses": [float(v) for v in res.losses]}
    if workdir is not None:
        save(Path(workdir) / "model", res.model, stats, config)
        log(f"w-diffusion: saved {Path(workdir) / 'model'}")
    summary["model"], summary["stats"] = res.model, stats
    return summary


def _checkpoint_config(config: Mapping[str, Any], x_dim: int) -> dict:
    return {"x_dim": int(x_dim), "net": dict(config["net"]), "schedule": config.get("schedule", "cosine"),
            "num_levels": int(config.get("num_levels", 100)),
            "parameterisation": str(config.get("parameterisation", diffusion.ENERGY))}


def save(directory: str | Path, model: diffusion.DiffusionModel, stats: Standardizer,
         config: Mapping[str, Any]) -> None:
    """Write the model's parameters and standardiser as an orbax checkpoint with its config."""
    from lace_jax import checkpoint

    variables = {"params": model.params, "stats": {"mean": stats.mean, "std": stats.std}}
    checkpoint.save(directory, jax.tree_util.tree_map(np.asarray, variables),
                    _checkpoint_config(config, model.net.x_dim), CHECKPOINT_KIND, overwrite=True)


def load(directory: str | Path) -> tuple[diffusion.DiffusionModel, Standardizer, dict]:
    """(model, standardiser, config) from `save`'s directory; a clear error when it is missing or not one."""
    from lace_jax import checkpoint

    directory = Path(directory)
    meta = checkpoint.read_meta(directory)
    if meta["kind"] != CHECKPOINT_KIND:
        raise checkpoint.CheckpointError(f"{directory} holds a {meta['kind']!r} checkpoint, not {CHECKPOINT_KIND!r}")
    cfg = meta["config"]
    model = init_from_config(cfg, cfg["x_dim"], jax.random.PRNGKey(0))
    abstract = {"params": model.params,
                "stats": {"mean": jnp.zeros((cfg["x_dim"],)), "std": jnp.zeros((cfg["x_dim"],))}}
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), abstract)
    _, cfg, variables = checkpoint.load(directory, abstract=abstract, kind=CHECKPOINT_KIND)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    stats = Standardizer(variables["stats"]["mean"], variables["stats"]["std"])
    return model.replace(params=variables["params"]), stats, cfg


# --------------------------------------------------------------------------------------------------------------
# `python sample.py --config diffusion_latent --checkpoint_dir <train.py workdir>`

SAMPLERS = ("reverse", "pf_ode", "ula", "mala", "hmc")


def run(config: Mapping[str, Any], request: Any) -> Any:
    """Conditions composed with the w-space energy diffusion model, sampled by `sampler` (reverse, pf_ode, ula,
    mala, hmc; the config's `sampler` unless the request names one) with the config's `guidance_weight`; the
    same grid, npz and record as the world runs (`lace_jax.runs.output.Output`)."""
    import jax

    from lace_jax import checkpoint
    from lace_jax.runs import evaluation, output, request as rq

    say = request.progress
    t0 = time.time()
    if request.edits or request.sweep:
        raise rq.RequestError("--config diffusion_latent samples conditions only (no --edit or --sweep)")
    if not request.checkpoint_dir:
        raise rq.RequestError("--config diffusion_latent needs --checkpoint_dir: the --workdir of "
                              "`python train.py --config diffusion_latent --workdir DIR`")
    model_dir = Path(request.checkpoint_dir).expanduser() / "model"
    sampler = request.sampler or str(config.get("sampler", "mala"))
    if sampler not in SAMPLERS:
        raise rq.RequestError(f"sampler {sampler!r} does not sample the w-diffusion model; use one of "
                              f"{', '.join(SAMPLERS)}")
    try:
        model, stats, model_cfg = load(model_dir)
    except checkpoint.CheckpointError as err:
        raise rq.RequestError(f"{err} (make it with: python train.py --config diffusion_latent --workdir "
                              f"{request.checkpoint_dir})") from None
    world = w_world(rq.load_world(dict(config["world"]), request.config_name))
    conds = rq.conditions(world, rq.expressions(request) or list(config["conditions"]))
    n = int(request.num_samples or config.get("sample_num_samples", 16))
    weight = float(config.get("guidance_weight", config.get("guidance_weights", [1.0])[0]))
    output.prepare_out_dir(request.out_dir)
    spec = dict(config["samplers"].get(sampler, {}))
    kw: dict = {}
    if sampler not in ("reverse", "pf_ode"):
        kw["ancestral"] = bool(spec.pop("ancestral", True))
        kw["step_size"] = diffusion.step_sizes(model.schedule, spec.pop("small"), spec.pop("large"))
        if request.options.get("step_size") is not None:
            kw["step_size"] = float(request.options["step_size"])
        kw.update(spec)
    say(f"world={world.name} w-diffusion ({model_cfg['num_levels']} levels) sampler={sampler} λ={weight:g} "
        f"backend={jax.default_backend()}")
    zs, runs = [], []
    for k, expr in enumerate(conds):
        target = conditioned(model, world.parse(expr), stats, weight)
        res = sample_w(target, model, stats, jax.random.fold_in(jax.random.PRNGKey(request.seed), k), n,
                       method=sampler, **kw)
        ok = np.all(np.isfinite(res.w), axis=-1)
        zs.append(np.where(ok[:, None], res.w, np.nan).astype(np.float32))
        runs.append({"expr": expr, "nfe": res.nfe, "acceptance": res.acceptance, "seconds": res.seconds,
                     "num_failed": int((~ok).sum()), "failed_indices": np.nonzero(~ok)[0].tolist()})
        say(f"condition {k + 1}/{len(conds)}: {expr!r}: {n} samples, NFE {res.nfe}, {res.seconds:.1f}s"
            + (f", {int((~ok).sum())} non-finite (excluded)" if (~ok).any() else ""))
    success = np.stack([np.all(np.isfinite(z), axis=-1) for z in zs])
    if not success.any():
        raise rq.RequestError(f"every sample is non-finite ({sampler}); try smaller step sizes or another sampler")
    grid, pngs, u8 = output.image_output(world, zs, conds, request.grid_columns,
                                         f"{world.name} w-diffusion [{sampler}] seed {request.seed}",
                                         [f"condition_{k}_{output.slug(c)}.png" for k, c in enumerate(conds)])
    arrays = {"w": np.stack(zs), "success": success}
    if request.save_images:
        arrays["images"] = np.stack(u8)
        arrays["images"][~success] = 0
    record = {**request.record, "world": world.name, "config": dict(config), "model": model_cfg, "sampler": sampler,
              "guidance_weight": weight, "num_samples": n, "seed": request.seed, "conditions": runs,
              "judge_summary": evaluation.judge_summaries(world, zs, conds, success),
              "time_s": {"sample_incl_compile": time.time() - t0}}
    return output.Output(grid=grid, pngs=pngs, arrays=arrays, record=record)
