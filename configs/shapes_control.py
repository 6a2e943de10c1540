"""LACE-ODE control of the default model scored by the judge (`lace_jax.training.control`):
`python evaluate.py --config shapes_control --set num=256` (out/evaluate/control.json)."""


def get_config() -> dict:
    return {
        "kind": "control",
        "num": 64,                   # samples per condition
        "seed": 5,                   # PRNG seed of the starting latents
        "assets": None,              # default-model directory (None: the shipped one)
        "classifier_space": "wz",    # wz (product of the w and z classifiers) | w (LACE's) | z
        "sampler": None,             # None: LACE's dopri5 1e-3; or {"kind": "tc", "solver": "bosh3", ...}
        "update_card": False,        # store the result as metrics.control in the model card
    }
