"""The shipped default model (lace_jax/assets/default): StyleGAN2 on the procedural shapes world.

`python sample.py` uses this config. Discrete attributes (shape, background) are classified by the product of
their classifier on w = mapping(z) (LACE's CIFAR-10) and their classifier on z, continuous ones on w
(`classifier_space: 'wz'`; 'w' = LACE's w classifiers alone, 'z' = the z classifiers; why, with the numbers, in
docs/default_model.md);
ψ = 1 (no truncation) and t from 1 to 0 as LACE's CIFAR-10 settings, dopri5 with rtol = atol = 1e-3, SGLD
η = s = 0.01 for 100 steps. `model_dir` points at another directory laid out like the shipped assets (e.g. a
model you trained with train.py and exported with `python train.py --config shapes_export`).

Attributes: shape (square, circle, triangle, star), background (black, grey, white), size, x, y, hue in [0, 1]
(see docs/default_model.md for their physical meaning). `!` is the probabilistic complement here
(`not_op`; `--set not_op=lace` gives LACE's NOT).
"""


def get_config() -> dict:
    return {
        "world": "shapes",
        "name": "shapes",
        "model_dir": None,                 # None: the shipped default model
        "classifier_space": "wz",
        "truncation_psi": 1.0,
        "t_end": 0.0,
        "dis_temp": 1.0,
        # `!` in expressions: the probabilistic complement −log(1 − p) (docs/default_model.md compares it with
        # 'lace' = LACE's bounded scaled NOT and 'plain' = −E on this model)
        "not_op": "complement",
        "noise_mode": "const",
        # matmul precision of the drift (mapping + latent classifiers): highest | tf32 | bf16 | auto (highest on
        # CPU, the measured pick on a GPU; lace_jax/models/precision.py, docs/performance.md)
        "precision": "auto",
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "independent"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        "expr": "shape=circle",
        # what `python sample.py` draws with no condition flags: one labelled grid row per condition
        "conditions": ["shape=square", "shape=circle", "shape=triangle", "shape=star"],
        "samples_per_condition": 8,
        "chunk_size": 256,
    }
