"""Temperature-calibrate the default model's discrete latent classifiers (`lace_jax.training.calibrate`):
`python train.py --config shapes_calibrate --workdir runs/calibrate` (report in the workdir)."""


def get_config() -> dict:
    return {
        "kind": "calibrate",
        "num": 20000,                # held-out judged samples
        "seed": 20261201,            # PRNG seed of the held-out latents (never used in training)
        "assets": None,              # default-model directory (None: the shipped one)
        "dry_run": False,            # fit and report only; do not touch the stored classifiers
    }
