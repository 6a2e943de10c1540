"""lace_jax.worlds: what a run needs to know about the latent space it samples in (attributes for the expression
language, latent dimension, renderer, z → w, ψ, t_end, judge, sampler defaults).

    world = worlds.world_from_config("shapes")        # a config name, path or dict (configs/*.py)
    energy = world.parse("shape=circle & !background=white")

* `shapes` — the shipped default model (`worlds.shapes.load_default`): StyleGAN2 on the procedural shapes world,
  latent classifiers, the image judge and real renders.
* `toy2d` — the 2-D demo world with classifiers defined in code (`worlds.toy2d`).
* `lace` — your converted LACE checkpoints (`python -m ports.convert`), e.g. `configs/cifar10.py`, `ffhq.py`.
"""
from lace_jax.worlds._world import (WORLDS, GeneratorRender, MissingCheckpointError, ShapesJudge, World, lace_world,
                                    shapes_world, toy2d_world, world_from_config)
from lace_jax.worlds.shapes import DefaultModel, load_default

__all__ = ["WORLDS", "GeneratorRender", "MissingCheckpointError", "ShapesJudge", "World", "lace_world",
           "shapes_world", "toy2d_world", "world_from_config", "DefaultModel", "load_default"]
