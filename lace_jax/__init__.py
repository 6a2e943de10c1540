"""lace_jax: LACE (compositional, controllable generation with latent-space energies) in JAX/Flax."""

__version__ = "0.1.0"
