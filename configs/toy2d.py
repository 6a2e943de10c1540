"""The 2-D demo world (lace_jax.worlds.toy2d): classifiers defined in code on z ∈ R², no images (a scatter plot instead).

Attributes: cluster (ne, nw, sw, se), right (no, yes), top (no, yes), radius in [0, 3], x in [−3, 3].
"""


def get_config() -> dict:
    return {
        "world": "toy2d",
        "name": "toy2d",
        "t_end": 0.0,
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "independent"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        "expr": "radius=2 & (cluster=ne | cluster=sw)",
        "samples_per_condition": 1000,
        "chunk_size": 1000,
    }
