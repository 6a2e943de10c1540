"""lace_jax.models."""
