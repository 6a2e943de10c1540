"""The shipped default model: a small StyleGAN2 trained on the shapes world, its judge and latent classifiers.

`load_default()` reads `lace_jax/assets/default/` (orbax checkpoints + `model_card.json`) and returns everything a
sampler needs: the generator (config + variables), LACE's z → w map, one latent classifier per attribute as
pytree-callables on z (ready for `lace_jax.energy`), the attribute specs, and the image judge for evaluation.
It is a CPU-budget model (see `docs/default_model.md` and the model card for how it was trained and how good it is).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from lace_jax import checkpoint
from lace_jax import energy
from lace_jax.models import stylegan2 as sg
from lace_jax.models.attribute_cnn import AttributeCNN
from lace_jax.models.classifiers import LatentClassifier, MappingW, ProductOfExperts

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "default"
SPACES = ("w", "z", "wz")
DEFAULT_SPACE = "wz"


@dataclass(frozen=True)
class DefaultModel:
    """The loaded default model. `classifiers[name]` maps z[z_dim] → logits [K] (discrete) or [1] (continuous)
    through `mapping` (LACE's classifier on w = mapping(z)); `classifiers_z` are the same attributes classified
    directly on z. `attributes` is what `lace_jax.energy.parse` takes (by default discrete attributes use the
    product of the w and z classifiers, continuous ones w; see `build_attributes`). `specs` lists name, kind,
    classes, range and meaning per attribute. `judge(images[B,3,32,32])` gives the image classifier's outputs.
    `classifier_space` says how `attributes` classify."""
    generator_config: sg.StyleGAN2Config
    generator: dict
    mapping: MappingW
    classifiers: dict
    classifiers_z: dict
    attributes: dict
    specs: list
    judge_model: AttributeCNN
    judge_params: Any
    card: dict
    classifier_space: str = DEFAULT_SPACE

    @property
    def z_dim(self) -> int:
        return self.generator_config.z_dim

    def generate(self, z: jax.Array, *, truncation_psi: float = 1.0, noise_mode: str = "const") -> jax.Array:
        """Images [B, 3, 32, 32] in [−1, 1] from latents z [B, z_dim]."""
        return sg.generate(self.generator_config, self.generator, z, truncation_psi=truncation_psi,
                           noise_mode=noise_mode)

    def judge(self, images: jax.Array) -> dict:
        """The judge's outputs on NCHW images: logits per discrete attribute, values [B, 5], features [B, F]."""
        return _judge_apply(self.judge_model, self.judge_params, images)


@functools.partial(jax.jit, static_argnums=0)
def _judge_apply(model: AttributeCNN, params: Any, images: jax.Array) -> dict:
    return model.apply({"params": params}, images)


def _judge_from_config(cfg: dict) -> AttributeCNN:
    return AttributeCNN(discrete=tuple((n, int(k)) for n, k in cfg["discrete"]),
                        continuous=tuple(cfg["continuous"]), widths=tuple(cfg["widths"]),
                        features=int(cfg["features"]))


def build_attributes(specs: list, w: dict, z: dict, space: str = DEFAULT_SPACE, *, temperature: float = 1.0,
                     sigma: float = 0.1) -> dict:
    """`energy.Attribute`s per spec from the w classifiers `w` and z classifiers `z` (name → pytree-callable on
    z). `space`: 'w' (LACE: every attribute classified on w = mapping(z)), 'z', or 'wz' (the default: discrete
    attributes by the `ProductOfExperts` of their w and z classifiers, continuous ones on w — the z regressors are
    less accurate and averaging them in lowered the judge's accuracy; docs/default_model.md)."""
    if space not in SPACES:
        raise ValueError(f"default model: classifier_space must be one of {SPACES}, got {space!r}")
    out: dict = {}
    for spec in specs:
        name, kind = spec["name"], spec["kind"]
        fn = (z if space == "z" else w).get(name)
        if space == "wz" and kind == "discrete" and name in w and name in z:
            fn = ProductOfExperts((w[name], z[name]))
        if fn is None:
            continue
        if kind == "discrete":
            out[name] = energy.Attribute("discrete", fn, classes=tuple(spec["classes"]), temperature=temperature)
        else:
            out[name] = energy.Attribute("continuous", fn, value_range=tuple(spec["range"]), sigma=sigma)
    return out


def load_default(path: str | Path | None = None, classifier_space: str = DEFAULT_SPACE) -> DefaultModel:
    """Load the shipped default model (or a directory laid out like `lace_jax/assets/default/`); `attributes`
    classify on `classifier_space` (see `build_attributes`)."""
    if classifier_space not in SPACES:
        raise ValueError(f"load_default: classifier_space must be one of {SPACES}, got {classifier_space!r}")
    root = Path(path) if path is not None else ASSETS
    card_path = root / "model_card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"default model not found: {card_path} is missing (is the package data installed?)")
    card = json.loads(card_path.read_text())
    g_cfg, g_vars = checkpoint.load_generator(root / "generator")
    g_vars = jax.tree_util.tree_map(jnp.asarray, g_vars)
    mapping = MappingW.create(g_cfg, g_vars)
    _, jcfg, jvars = checkpoint.load(root / "judge", kind="attribute_cnn")
    judge_model = _judge_from_config(jcfg)
    specs = card["attributes"]
    classifiers, classifiers_z = {}, {}
    for spec in specs:
        name = spec["name"]
        for space, table in (("w", classifiers), ("z", classifiers_z)):
            d = root / "classifiers" / f"{space}_{name}"
            if not d.is_dir():
                continue
            ccfg, cvars = checkpoint.load_classifier(d)
            cvars = jax.tree_util.tree_map(jnp.asarray, cvars)
            table[name] = LatentClassifier.create(ccfg, cvars, g=mapping if space == "w" else None, head=0)
    attributes = build_attributes(specs, classifiers, classifiers_z, classifier_space)
    return DefaultModel(generator_config=g_cfg, generator=g_vars, mapping=mapping, classifiers=classifiers,
                        classifiers_z=classifiers_z, attributes=attributes, specs=specs, judge_model=judge_model,
                        judge_params=jax.tree_util.tree_map(jnp.asarray, jvars["params"]), card=card,
                        classifier_space=classifier_space)
