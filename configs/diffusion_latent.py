"""Energy diffusion over the shipped model's w space, composed with its LACE latent classifiers (issue 8).

    python train.py --config diffusion_latent --workdir runs/wdiff          # trains the w-space model
    python experiments/diffusion_latent.py --workdir runs/wdiff             # samples, judges, writes docs/
    python sample.py --config diffusion_latent --checkpoint_dir runs/wdiff --expr "shape=circle"   # one run

The model: an energy-parameterised residual MLP (`lace_jax.diffusion`) over standardised w = mapping(z),
cosine schedule with 50 levels (so one pass of reverse diffusion costs 50 NFE, LACE-ODE's budget at
rtol = atol = 1e-3 on this model), trained on 200k latents. Conditions are composed with the w classifiers through
`lace_jax.latent_diffusion.conditioned` (weight λ) and sampled by reverse diffusion, its probability-flow ODE (DDIM) and annealed ULA/MALA/HMC.
"""


def get_config() -> dict:
    return {
        "kind": "diffusion_latent",
        "seed": 0,
        "world": {"world": "shapes", "classifier_space": "w", "truncation_psi": 1.0, "not_op": "complement"},
        "num_train": 200_000,
        "parameterisation": "energy",
        "schedule": "cosine",
        "num_levels": 50,
        "net": {"hidden": 256, "num_blocks": 3, "widen": 2, "emb_dim": 64},
        "train": {"steps": 4000, "batch_size": 512, "lr": 1e-3, "ema": 0.999, "chunk": 200},
        # the experiment
        # λ in p(w)·p(c | w)^λ (1: the target LACE's energy defines)
        "guidance_weights": [1.0, 3.0],
        # sample.py --config diffusion_latent --checkpoint_dir <workdir>: sampler, λ and samples per condition
        "sampler": "mala",
        "guidance_weight": 1.0,
        "sample_num_samples": 16,
        "conditions": ["shape=circle", "background=black", "shape=circle & background=black",
                       "background=black | background=white", "!shape=circle"],
        "num_samples": 256,
        "num_reference": 4000,
        # prior samples for the exact target's judge accuracy by importance weighting
        "num_importance": 8192,
        # samplers over w (step sizes per level: small + (large − small)·σ_k²)
        "samplers": {
            "reverse": {},
            "pf_ode": {},
            "ula": {"steps_per_level": 1, "small": 5e-3, "large": 0.1, "ancestral": True},
            "mala": {"steps_per_level": 1, "small": 2e-2, "large": 0.3, "ancestral": True},
            "hmc": {"steps_per_level": 1, "num_leapfrog": 2, "damping": 0.5, "small": 0.02, "large": 0.2,
                    "ancestral": True},
        },
        # LACE-ODE on z (the world's classifiers through the mapping) at two tolerances
        "ode_tolerances": [1e-3, 1e-4],
        "out_dir": "docs/diffusion_latent",
    }
