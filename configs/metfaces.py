"""LACE on MetFaces (NVlabs/LACE `MetFaces/`): stylegan2-ada MetFaces generator (1024 px), one DenseEmbedder per
attribute on w = G.mapping(z, ψ = 0.7)[:, 0].

Bring and convert the weights (sizes are read from the checkpoints):

    python -m ports.convert --in metfaces.pkl --out checkpoints/metfaces/generator
    python -m ports.convert --in best_valid_ckpt_yaw.pt --out checkpoints/metfaces/yaw    # one per attribute

LACE's settings (scripts/run_cond_sample.sh): ψ = 0.7, PF-ODE from t = 1 to t = 1e-3 with dopri5
rtol = atol = 1e-3; SGLD η = s = 0.01, 100 steps. Attribute kinds and class counts are LACE's
`metfaces_data.att_dict` (continuous values in [0, 1]).
"""

METFACES_ATTRIBUTES = {"yaw": 1, "light3": 1, "smile": 2, "gender": 2, "age": 1, "glasses": 2, "pitch": 1,
                       "haircolor": 5, "beard": 2, "bald": 1, "light0": 1, "width": 1}


def get_config() -> dict:
    attributes = {}
    for name, n in METFACES_ATTRIBUTES.items():
        spec = {"kind": "continuous" if n == 1 else "discrete", "checkpoint": name,
                "source": f"best_valid_ckpt_{name}.pt"}
        if n == 1:
            spec["value_range"] = [0.0, 1.0]
        attributes[name] = spec
    return {
        "world": "lace",
        "name": "metfaces",
        "checkpoint_dir": "checkpoints/metfaces",
        "generator": {"checkpoint": "generator", "source": "metfaces.pkl"},
        "classifier_space": "w",
        "truncation_psi": 0.7,
        "t_end": 1e-3,
        "dis_temp": 1.0,
        "noise_mode": "const",
        # matmul precision of the drift (mapping + latent classifiers): highest | tf32 | bf16 | auto (highest on
        # CPU, the measured pick on a GPU; lace_jax/models/precision.py, docs/performance.md)
        "precision": "auto",
        "use_attributes": ["yaw", "gender"],
        "attributes": attributes,
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "joint"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        "expr": "gender=1 & yaw=0.5",
        "batch_size": 16,
    }
