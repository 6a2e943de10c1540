"""A cheap stand-in sampler for the chunked-generation tests (one process and several)."""
import jax
import jax.numpy as jnp


def toy_per_sample(params, key, index):
    """z = scale·N(0, I) + shift, failing (NaN row) when z[0] < −1; nfe 7, 8 or 9 by index."""
    z = jax.random.normal(key, (3,)) * params["scale"] + params["shift"]
    ok = z[0] >= -1.0
    return jnp.where(ok, z, jnp.nan), ok, {"nfe": jnp.int32(7) + index % 3}


PARAMS = {"scale": jnp.float32(1.5), "shift": jnp.float32(0.25)}
