"""LACE on AFHQ-Cat (NVlabs/LACE `AFHQ/`): stylegan2-ada AFHQ-Cat generator (512 px), one DenseEmbedder per
CLIP-labelled attribute on w = G.mapping(z, ψ = 0.7)[:, 0].

Bring and convert the weights (sizes are read from the checkpoints):

    python -m ports.convert --in afhqcat.pkl --out checkpoints/afhq_cat/generator
    python -m ports.convert --in best_valid_ckpt_breeds.pt --out checkpoints/afhq_cat/breeds    # one per attribute

LACE's settings (scripts/run_cond_sample.sh): ψ = 0.7, discrete temperature dis_temp = 0.7, PF-ODE from t = 1 to
t = 1e-3 with dopri5 rtol = atol = 1e-3; SGLD η = s = 0.01, 100 steps. Every attribute is discrete (CLIP prompts,
`afhq_data.cat_attr_classes_dict`); class names here use '_' for spaces so they can be written bare in expressions.
"""

AFHQ_CAT_CLASSES = {
    "breeds": ["egyptian_cat", "himalayan_cat", "bombay_cat", "snowshoe_cat", "maine_coon_cat",
               "norwegian_forest_cat", "calico_cat", "scottish_fold_cat", "singapura_cat", "bengal_cat",
               "savannah_cat", "siberian_cat", "siamese_cat", "persian_cat", "ragdoll_cat", "british_shorthair_cat"],
    "haircolor": ["white", "ginger", "black", "grey", "brown", "cream", "cinnamon"],
    "moods": ["grumpy", "playful", "bored", "fearful", "happy"],
    "age": ["kitten", "old"],
}


def get_config() -> dict:
    return {
        "world": "lace",
        "name": "afhq_cat",
        "checkpoint_dir": "checkpoints/afhq_cat",
        "generator": {"checkpoint": "generator", "source": "afhqcat.pkl"},
        "classifier_space": "w",
        "truncation_psi": 0.7,
        "t_end": 1e-3,
        "dis_temp": 0.7,
        "noise_mode": "const",
        # matmul precision of the drift (mapping + latent classifiers): highest | tf32 | bf16 | auto (highest on
        # CPU, the measured pick on a GPU; lace_jax/models/precision.py, docs/performance.md)
        "precision": "auto",
        "use_attributes": ["breeds", "haircolor", "moods", "age"],
        "attributes": {name: {"kind": "discrete", "classes": classes, "checkpoint": name,
                              "source": f"best_valid_ckpt_{name}.pt"} for name, classes in AFHQ_CAT_CLASSES.items()},
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "joint"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        "expr": "haircolor=ginger & age=kitten",
        "batch_size": 16,
    }
