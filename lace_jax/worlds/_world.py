"""Worlds: everything a sampling run needs to know about the latent space it samples in.

A `World` bundles the attributes (`energy.Attribute`s, ready for `energy.parse`), the latent dimension, a renderer
`render(z[B, D]) -> NCHW images in [−1, 1]` (None for the 2-D toy world), LACE's z → w map (None when the
classifiers read z itself), the truncation ψ, the ODE end time t_end, an optional judge, and the sampler defaults
of the config it came from.

`world_from_config(config)` builds one from a config dict (`configs/*.py`):
* `{"world": "toy2d"}` — the 2-D demo world (`lace_jax.worlds.toy2d`), classifiers defined in code.
* `{"world": "shapes", ...}` — the shipped default model (`lace_jax.worlds.shapes`, or `model_dir` laid out like it):
  StyleGAN2 on the procedural shapes world, latent classifiers on w (or z), the image judge and real renders.
* `{"world": "lace", ...}` — user-brought LACE weights converted with `python -m ports.convert`: a generator
  checkpoint and one LACE `DenseEmbedder` checkpoint per attribute (or one multi-class classifier, as CIFAR-10).
  Paths are relative to `checkpoint_dir` unless absolute. Sizes (z_dim, w_dim, number of classes) come from the
  checkpoints, never from the config; a missing checkpoint raises `MissingCheckpointError` naming the file expected
  and the convert command that makes it.

LACE config fields: `name`, `checkpoint_dir`, `generator` {`checkpoint`, `source`}, `classifier_space` ('w' or 'z'),
`truncation_psi`, `t_end`, `dis_temp` (discrete temperature), `use_attributes` (names, in LACE's order), `attributes`
{name: {`kind`, `classes` (optional names), `value_range` (continuous), `checkpoint`, `source`, `head`}},
`sampler` (`SamplerOptions` fields + `name`), `sgld` (LACE's SGLD settings), `expr` (a default expression).

Every world config may set `precision`: the matmul policy of the drift's networks — the mapping z → w and the latent
classifiers — one of `highest`, `tf32`, `bf16`, `auto` (`lace_jax.models.precision`; absent: `highest`). The ODE
state, the solver and rendering stay float32. `auto` is resolved for the backend when the world is built, and the
world's `config` (hence a batch run's manifest) holds the resolved policy. The 2-D toy world has no such networks
and ignores it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import flax.struct
import jax
import jax.numpy as jnp

from lace_jax import energy as en

WORLDS = ("toy2d", "shapes", "lace")


class MissingCheckpointError(FileNotFoundError):
    """A converted checkpoint the world needs is not there; the message names it and the convert command."""


@flax.struct.dataclass
class GeneratorRender:
    """`z[B, z_dim] -> NCHW images` through the StyleGAN2 generator as LACE renders its samples: mapping with the
    world's ψ on every layer (class label zeros for conditional generators), synthesis with noise 'const'.
    A pytree (weights as leaves), so `jax.jit(world.render)` compiles once."""
    variables: Any
    c: Any = None
    truncation_psi: Any = 1.0
    config: Any = flax.struct.field(pytree_node=False, default=None)
    noise_mode: str = flax.struct.field(pytree_node=False, default="const")

    def __call__(self, z: jax.Array) -> jax.Array:
        from lace_jax.models import stylegan2 as sg

        c = None if self.c is None else jnp.broadcast_to(self.c, (z.shape[0],) + self.c.shape)
        return sg.generate(self.config, self.variables, z, c, truncation_psi=self.truncation_psi,
                           noise_mode=self.noise_mode)


@dataclasses.dataclass(frozen=True)
class World:
    """What a sampling run needs from a latent world (see the module docstring)."""
    name: str
    attributes: Mapping[str, en.Attribute]     # in LACE's attribute order
    latent_dim: int
    render: Optional[Callable] = None          # z[B, D] -> NCHW in [−1, 1]; None: no images (toy2d)
    mapping: Optional[Callable] = None         # z[D] -> w (pytree-callable); None: classifiers read z
    truncation_psi: float = 1.0
    t_end: float = 0.0
    judge: Optional[Callable] = None           # images -> {"labels": {name: [B]}, "features": [B, F]} (evaluation)
    fit_judge: Optional[Callable] = None       # images -> {"labels": {name: [B]}, "realistic": [B]} (analysis by
                                               # synthesis: the render that explains each image; shapes world)
    real_images: Optional[Callable] = None     # (key, n) -> NCHW real images in [−1, 1] (Fréchet reference)
    sampler: Mapping[str, Any] = dataclasses.field(default_factory=dict)   # default sampler name + options
    sgld: Mapping[str, Any] = dataclasses.field(default_factory=dict)      # LACE's SGLD settings
    expr: str = ""                              # a default expression
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    precision: str = "highest"                  # matmul policy of mapping + classifiers (lace_jax.models.precision)

    def parse(self, expr: str) -> Any:
        """`energy.parse(expr, attributes)` with the config's NOT operator (`not_op`: 'lace' by default)."""
        return en.parse(expr, self.attributes, not_op=en.not_op(str(self.config.get("not_op", "lace"))))

    def sampler_options(self, **overrides):
        """`SamplerOptions` from the world's defaults (t_end included), with `overrides` applied."""
        from lace_jax.samplers._dispatch import SamplerOptions

        fields = {f.name for f in dataclasses.fields(SamplerOptions)}
        kw = {k: v for k, v in self.sampler.items() if k in fields}
        kw.setdefault("t_end", self.t_end)
        kw.update(overrides)
        return SamplerOptions(**kw)


# --------------------------------------------------------------------------------------------------------------

def toy2d_world(config: Mapping[str, Any] | None = None) -> World:
    """The 2-D demo world of `lace_jax.worlds.toy2d`."""
    from lace_jax.worlds import toy2d

    config = dict(config or {"world": "toy2d"})
    return World(name="toy2d", attributes=toy2d.attributes(), latent_dim=2, t_end=float(config.get("t_end", 0.0)),
                 sampler=dict(config.get("sampler", {})), sgld=dict(config.get("sgld", {})),
                 expr=str(config.get("expr", "radius=2 & (cluster=ne | cluster=sw)")), config=config)


@flax.struct.dataclass
class ShapesJudge:
    """The shapes world's image judge as a pytree-callable: `judge(images[B,3,R,R])` → `{"labels": {name: [B]},
    "features": [B, F]}` (class index per discrete factor, regressed value in [0, 1] per continuous factor,
    penultimate features for Fréchet distances)."""
    params: Any
    model: Any = flax.struct.field(pytree_node=False, default=None)

    def __call__(self, images: jax.Array) -> dict:
        out = self.model.apply({"params": self.params}, images)
        labels = {name: jnp.argmax(out["logits"][name], -1) for name, _ in self.model.discrete}
        labels.update({name: out["values"][:, i] for i, name in enumerate(self.model.continuous)})
        return {"labels": labels, "features": out["features"]}


def _shapes_real_images(resolution: int):
    from lace_jax.data import shapes

    def real(key: jax.Array, n: int) -> jax.Array:
        return shapes.sample(key, int(n), resolution)[0]

    return real


def shapes_world(config: Mapping[str, Any] | None = None) -> World:
    """The shipped default model (`model_dir`: a directory laid out like `lace_jax/assets/default/`; None: the
    shipped one) with classifiers on `classifier_space` ('wz' by default: discrete attributes by the product of
    the w and z classifiers, continuous on w; 'w' as LACE; 'z') and truncation ψ."""
    from lace_jax.data import fit_judge
    from lace_jax.worlds.shapes import DEFAULT_SPACE, build_attributes, load_default
    from lace_jax.models.classifiers import MappingW

    config = dict(config or {"world": "shapes"})
    model_dir = config.get("model_dir")
    if model_dir is not None and not (Path(model_dir).expanduser() / "model_card.json").is_file():
        raise MissingCheckpointError(
            f"shapes: no default-model directory at {model_dir} (expected {Path(model_dir) / 'model_card.json'}, "
            "laid out like lace_jax/assets/default/; python train.py --config shapes_export writes one)")
    model = load_default(None if model_dir is None else Path(model_dir).expanduser())
    space = str(config.get("classifier_space", DEFAULT_SPACE))     # build_attributes checks it
    psi = float(config.get("truncation_psi", 1.0))
    policy = _policy(config)
    g_cfg = model.generator_config
    mapping = MappingW.create(g_cfg, model.generator, truncation_psi=psi, precision=policy)
    w_table = {n: c.replace(g=mapping).with_precision(policy) for n, c in model.classifiers.items()}
    z_table = {n: c.with_precision(policy) for n, c in model.classifiers_z.items()}
    attributes = build_attributes(model.specs, w_table, z_table, space,
                                  temperature=float(config.get("dis_temp", 1.0)), sigma=float(config.get("sigma", 0.1)))
    render = GeneratorRender(variables=model.generator, c=None, truncation_psi=jnp.float32(psi), config=g_cfg,
                             noise_mode=str(config.get("noise_mode", "const")))
    return World(name="shapes", attributes=attributes, latent_dim=g_cfg.z_dim, render=render,
                 mapping=None if space == "z" else mapping, truncation_psi=psi,
                 t_end=float(config.get("t_end", 0.0)),
                 judge=ShapesJudge(params=model.judge_params, model=model.judge_model),
                 fit_judge=fit_judge.labels,
                 real_images=_shapes_real_images(g_cfg.img_resolution),
                 sampler=dict(config.get("sampler", {})), sgld=dict(config.get("sgld", {})),
                 expr=str(config.get("expr", "shape=circle")), config=config, precision=policy)


def _resolve(config: Mapping[str, Any], path: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and config.get("checkpoint_dir"):
        p = Path(config["checkpoint_dir"]).expanduser() / p
    return p


def _require(world: str, what: str, directory: Path, source: str | None) -> None:
    from lace_jax import checkpoint

    if (directory / checkpoint.META_FILE).is_file():
        return
    src = f"<path to your {source}>" if source else "<your .pkl/.pt>"
    raise MissingCheckpointError(
        f"{world}: the {what} checkpoint is missing: expected {directory / checkpoint.META_FILE} (a converted "
        f"lace_jax checkpoint). Convert the original weights first:\n"
        f"  python -m ports.convert --in {src} --out {directory}\n"
        f"or point the config at an existing conversion (checkpoint_dir=..., or the field's own path).")


def lace_world(config: Mapping[str, Any]) -> World:
    """A LACE world from converted user checkpoints (see the module docstring for the fields)."""
    from lace_jax import checkpoint
    from lace_jax.models.classifiers import LatentClassifier, MappingW

    name = str(config.get("name", "lace"))
    gen = dict(config["generator"])
    gdir = _resolve(config, gen["checkpoint"])
    space = str(config.get("classifier_space", "w"))
    if space not in ("w", "z"):
        raise ValueError(f"{name}: classifier_space must be 'w' or 'z', got {space!r}")
    attrs_cfg: Mapping[str, Mapping] = config["attributes"]
    use = list(config.get("use_attributes") or attrs_cfg.keys())
    unknown = [a for a in use if a not in attrs_cfg]
    if unknown:
        raise ValueError(f"{name}: use_attributes names unknown attributes {unknown}; known: {', '.join(attrs_cfg)}")
    # check every file first, so the user learns about all missing conversions before any loading
    _require(name, "generator", gdir, gen.get("source"))
    for a in use:
        _require(name, f"classifier ({a!r})", _resolve(config, attrs_cfg[a].get("checkpoint", a)),
                 attrs_cfg[a].get("source"))

    psi = float(config.get("truncation_psi", 1.0))
    policy = _policy(config)
    g_cfg, g_vars = checkpoint.load_generator(gdir)
    g_vars = jax.tree_util.tree_map(jnp.asarray, g_vars)
    c = jnp.zeros((g_cfg.c_dim,), jnp.float32) if g_cfg.c_dim > 0 else None
    mapping = MappingW.create(g_cfg, g_vars, c=c, truncation_psi=psi, precision=policy)
    render = GeneratorRender(variables=g_vars, c=c, truncation_psi=jnp.float32(psi), config=g_cfg,
                             noise_mode=str(config.get("noise_mode", "const")))
    in_dim = g_cfg.w_dim if space == "w" else g_cfg.z_dim
    dis_temp = float(config.get("dis_temp", 1.0))

    attributes: dict[str, en.Attribute] = {}
    for a in use:
        spec = dict(attrs_cfg[a])
        cdir = _resolve(config, spec.get("checkpoint", a))
        c_cfg, c_vars = checkpoint.load_classifier(cdir)
        if c_cfg["dims"][0] != in_dim:
            raise ValueError(f"{name}: classifier {a!r} ({cdir}) reads {c_cfg['dims'][0]}-dim inputs, but the "
                             f"generator's {space} has {in_dim} dimensions (classifier_space={space!r})")
        clf = LatentClassifier.create(c_cfg, jax.tree_util.tree_map(jnp.asarray, c_vars),
                                      g=mapping if space == "w" else None, precision=policy)
        if c_cfg.get("num_classes_list") is not None:
            head = int(spec.get("head", 0))
            clf = clf.select(head)
            outputs = int(c_cfg["num_classes_list"][head])
        else:
            outputs = int(c_cfg["num_classes"])
        kind = spec.get("kind", "continuous" if outputs == 1 else "discrete")
        if kind == en.CONTINUOUS:
            if outputs != 1:
                raise ValueError(f"{name}: attribute {a!r} is configured continuous but its classifier ({cdir}) has "
                                 f"{outputs} outputs")
            vr = spec.get("value_range")
            attributes[a] = en.Attribute.continuous(clf, sigma=float(spec.get("sigma", 0.1)),
                                                    value_range=None if vr is None else tuple(vr))
        elif kind == en.DISCRETE:
            classes = spec.get("classes")
            if classes is not None and len(classes) != outputs:
                raise ValueError(f"{name}: attribute {a!r} lists {len(classes)} class names but its classifier "
                                 f"({cdir}) has {outputs} outputs")
            if outputs < 2:
                raise ValueError(f"{name}: attribute {a!r} is configured discrete but its classifier ({cdir}) has "
                                 f"{outputs} output")
            attributes[a] = en.Attribute.discrete(clf, outputs, classes=classes, temperature=dis_temp)
        else:
            raise ValueError(f"{name}: attribute {a!r} has unknown kind {kind!r}")

    return World(name=name, attributes=attributes, latent_dim=g_cfg.z_dim, render=render,
                 mapping=mapping if space == "w" else None, truncation_psi=psi,
                 t_end=float(config.get("t_end", 0.0)), judge=None, sampler=dict(config.get("sampler", {})),
                 sgld=dict(config.get("sgld", {})), expr=str(config.get("expr", "")), config=dict(config),
                 precision=policy)


def _policy(config: Mapping[str, Any]) -> str:
    """The config's matmul precision policy, resolved for the backend (see the module docstring)."""
    from lace_jax.models import precision

    return precision.resolve(config.get("precision", precision.DEFAULT))


def world_from_config(config: Mapping[str, Any] | str) -> World:
    """Build the world a config describes (a config dict, or a config name/path for `config.load_config`). A bad
    `precision` is a ValueError naming the choices; `auto` is replaced by the policy it resolves to."""
    if isinstance(config, str):
        if config == "toy2d":
            return toy2d_world()
        from lace_jax.config import load_config

        config = load_config(config)
    if "precision" in config:
        config = {**config, "precision": _policy(config)}
    kind = config.get("world")
    if kind == "toy2d":
        return toy2d_world(config)
    if kind == "shapes":
        return shapes_world(config)
    if kind == "lace":
        return lace_world(config)
    raise ValueError(f"unknown world {kind!r} in config; known: {', '.join(WORLDS)}")


__all__ = ["World", "GeneratorRender", "ShapesJudge", "MissingCheckpointError", "toy2d_world", "shapes_world",
           "lace_world", "world_from_config",
           "WORLDS"]
