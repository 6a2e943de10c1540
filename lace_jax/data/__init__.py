"""lace_jax.data."""
