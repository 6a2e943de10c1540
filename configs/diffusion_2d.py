"""2-D composition of diffusion models (Du et al. 2023, toy experiments): targets, models, compositions, samplers.

Sized for 2 shared CPU cores: small MLPs, short trainings, 500 samples per run, 2-3 MCMC steps per level.
"""


def get_config() -> dict:
    return {
        "kind": "diffusion_2d",
        "seed": 0,
        "schedule": "cosine",
        "num_levels": 100,
        "net": {"hidden": 64, "num_blocks": 3, "widen": 2, "emb_dim": 32},
        "train": {"steps": 1500, "batch_size": 256, "lr": 2e-3, "ema": 0.99, "chunk": 100},
        # exact targets (lace_jax.densities2d constructors and their arguments)
        "targets": {
            "gmm": {"name": "gmm_ring", "n_modes": 8, "radius": 1.5, "std": 0.15},
            "bar": {"name": "gaussian", "mean": [0.0, 0.0], "std": [0.3, 1.5]},
            "ring": {"name": "ring", "radius": 1.5, "std": 0.1},
            "checker": {"name": "checkerboard", "std": 0.05},
        },
        "compositions": [
            {"name": "gmm AND bar", "op": "product", "parts": ["gmm", "bar"]},
            {"name": "ring AND checker", "op": "product", "parts": ["ring", "checker"]},
            {"name": "bar OR ring", "op": "mixture", "parts": ["bar", "ring"], "temperature": 1.0},
            {"name": "gmm NOT bar", "op": "negation", "parts": ["gmm", "bar"], "weight": 0.5},
        ],
        # samplers: reverse diffusion, and annealed MCMC (one ancestral step, then MCMC, per level);
        # step sizes per level k: small + (large - small) * sigma_k^2
        "samplers": {
            "reverse": {},
            "pf_ode": {},                   # deterministic DDIM on the levels (the PF-ODE), same score
            "ula": {"steps_per_level": 3, "small": 5e-4, "large": 0.05},
            "mala": {"steps_per_level": 3, "small": 5e-4, "large": 0.05},
            "uhmc": {"steps_per_level": 2, "num_leapfrog": 2, "damping": 0.5, "small": 0.02, "large": 0.3},
            "hmc": {"steps_per_level": 2, "num_leapfrog": 2, "damping": 0.5, "small": 0.02, "large": 0.3},
        },
        "ancestral": True,
        "eval": {"num_samples": 500, "extent": [-3.0, 3.0, -3.0, 3.0], "grid": 256,
                 "mmd_bandwidths": [0.05, 0.1, 0.2, 0.5, 1.0], "swd_projections": 128},
        "out_dir": "docs/diffusion_2d",
        # train.py --config diffusion_2d --workdir DIR trains and saves every target × kind; sample.py --config
        # diffusion_2d --checkpoint_dir DIR --expr "gmm & !bar" composes them (lace_jax/diffusion_2d.py)
        "kinds": ["score", "energy"],
        "sampler": "mala",                  # reverse | pf_ode | ula | uhmc | mala | hmc (settings above)
        "parameterisation": "energy",       # the one sample.py composes (score | energy)
        "negation_weight": 0.5,
        "mixture_temperature": 1.0,
        "sample_num_samples": 500,
        "sample_exprs": ["gmm & bar", "bar | ring", "gmm & !bar"],
    }
