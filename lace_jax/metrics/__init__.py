"""lace_jax.metrics."""
