"""Composition sweep (issue 6): AND / OR / NOT expressions, PF-ODE vs SGLD vs MALA.

World-agnostic: `expressions` names attributes per world (`sweeps.settings_from_config(get_config(), world.name)`
crosses every grid block with them). Entries for the shipped shapes model (the default world) and the 2-D
demo world (toy2d).
"""


def get_config() -> dict:
    return {
        "world": "shapes",
        "num_samples": 512,
        "seed": 0,
        "tol": 0.1,
        "expressions": {
            "toy2d": [
                "cluster=ne",                       # single
                "right=yes & top=yes",              # AND
                "cluster=ne | cluster=sw",          # OR
                "!cluster=ne",                      # NOT
                "right=yes & !top=yes",             # AND NOT
                "radius=2 & (cluster=ne | cluster=sw)",
            ],
            "shapes": [
                "shape=circle",                          # single
                "shape=circle & background=black",       # AND
                "shape=square | shape=star",             # OR
                "!background=white",                     # NOT (LACE's bounded scaled negation)
                "shape=star & !background=white",        # AND NOT
                "background=black & size=0.8",           # discrete AND continuous
            ],
        },
        "grid": [
            {"label": "ode", "sampler": "ode", "solver": "dopri5", "rtol+atol": 1e-3},
            {"label": "sgld", "sampler": "sgld", "step_size": 1e-2, "noise_scale": 1e-2, "num_steps": 100},
            {"label": "mala", "sampler": "mala", "step_size": 5e-2, "num_steps": 200},
        ],
    }
