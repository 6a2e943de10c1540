"""lace_jax: LACE (compositional, controllable generation with latent-space energies) in JAX/Flax.

    from lace_jax import energy, samplers, worlds, runs
    world = worlds.world_from_config("shapes")                  # the shipped default model
    e = world.parse("shape=circle & !background=white")         # or energy.and_(...), energy.parse(expr, attrs)
    out = samplers.run(key, "ode", e, z0, samplers.SamplerOptions())
    res = runs.sample_condition(world, "shape=star", num_samples=64)

Data flow, one folder a stage: `ports` (user weights, torch-free) → `checkpoint` → `models` → `worlds` →
`energy` (with `expressions`) → `samplers` → `runs` → `sample.py` / `evaluate.py`. See docs/architecture.md.
"""

__version__ = "0.1.0"

from lace_jax import energy, expressions, runs, samplers, worlds  # noqa: E402

__all__ = ["energy", "expressions", "runs", "samplers", "worlds", "__version__"]
