"""lace_jax.samplers."""
