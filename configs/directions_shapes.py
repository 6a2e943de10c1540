"""Issue 9's experiment on the shipped shapes model: latent directions for x, y, size and hue found without labels
(Plumerault et al. with the Fourier-weighted and the plain MSE inversion loss), the linear-walk baseline, and LACE
continuous-attribute editing, all measured by the image judge. `python experiments/directions_shapes.py`
(`key=value` overrides, e.g. `num_eval=16 traj.num_starts=8 out_dir=/tmp/dirs` for a quick look).

Units: every factor is edited in its transformation's units — x, y: fractions of the width/height
(`translate_x/y`), size: log of the radius ratio (`zoom`), hue: turns of the RGB rotation about the grey axis
(`hue`, ≈ HSV hue). The world keeps centres in 0.3125..0.6875 of the width, radii 4.5..9 px, HSV hue 0..0.75, so
the trajectory amounts stay inside those ranges.
"""


def get_config() -> dict:
    return {
        # `python evaluate.py --config directions_shapes` runs the comparison experiment; `python train.py
        # --config directions_shapes --workdir DIR` finds and saves the directions (the `loss` below) and
        # `python sample.py --config directions_shapes --checkpoint_dir DIR --edit x=0.8` edits with them
        "kind": "directions",
        "seed": 0,
        "out_dir": "docs/directions",
        "model_dir": None,                  # None: the shipped default model (lace_jax/assets/default)
        "factors": ["x", "y", "size", "hue"],
        # the transformation amounts of the trajectories (the paper's two legs ±(max/steps … max)) and the
        # linear walk's α range, per factor, in the transformation's units
        "max_delta": {"x": 0.15, "y": 0.15, "size": 0.3, "hue": 0.15},
        "traj": {
            "num_starts": 32,               # latents z0 (×2 legs × 5 amounts = 320 inversions per factor and loss)
            "amounts_per_leg": 5,
            "steps": 60,                    # Adam steps per point (paper: 100 at lr 0.01)
            "learning_rate": 0.02,
            "sigma": 1.0,                   # Fourier-loss blur in px (paper: 3 px at 128 px)
            "constraint": "ball",
            "keep": 0.9,                    # drop the last decile of reconstruction errors (paper)
            "fit_steps": 2000,
        },
        "walk": {"steps": 300, "batch": 16, "learning_rate": 0.05, "loss": "mse"},
        # evaluation: fresh latents, each edited to every target (absolute judge values in [0, 1])
        "num_eval": 64,
        "num_calibrate": 256,               # judged latents that anchor g (trajectories only give relative amounts)
        "targets": [0.1, 0.3, 0.5, 0.7, 0.9],
        "num_real": 2000,                   # real renders for the Fréchet distances (judge features)
        "lace": {"enabled": True, "chunk_size": 64},
        "strip_starts": 2,                  # latents shown per method in the PNG strips
        # train.py / sample.py
        "loss": "fourier",                  # the inversion loss of the saved directions (fourier | mse)
        "num_check": 64,                    # train.py: fresh latents edited to every target and judged
        "sample_edits": ["x=0.25", "size=0.8", "hue=0.6"],   # sample.py without --edit
    }
