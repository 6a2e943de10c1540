"""Robustness sweep (issue 6): how the success rate and cost move with the solver settings.

World-agnostic: `expressions` names attributes per world; `python`-side use:
`sweeps.settings_from_config(get_config(), world.name)`. Entries for the shipped shapes model (the default
world) and the 2-D demo world (toy2d).
"""


def get_config() -> dict:
    return {
        "world": "shapes",
        "num_samples": 512,
        "seed": 0,
        "tol": 0.1,                     # continuous attributes count as satisfied when |f − y| < tol
        "expressions": {
            "toy2d": ["cluster=ne & radius=2"],
            "shapes": ["background=black", "shape=circle & background=black"],
        },
        "grid": [
            {"label": "ode-tol", "sampler": "ode", "solver": "dopri5", "rtol+atol": [1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
            {"label": "euler", "sampler": "ode", "solver": "euler", "num_steps": [2, 5, 10, 20, 50, 100]},
            {"label": "sgld", "sampler": "sgld", "step_size": [1e-3, 1e-2, 5e-2], "noise_scale": 1e-2,
             "num_steps": [10, 100, 1000]},
        ],
    }
