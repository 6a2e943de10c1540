"""LACE on CIFAR-10 (NVlabs/LACE `CIFAR10/`): stylegan2-ada CIFAR-10 generator, DenseEmbedder on w (`cifar10_w`).

Bring and convert the weights (sizes are read from the checkpoints, so any converted generator works):

    python -m ports.convert --in cifar10u-cifar-ada-best-fid.pkl --out checkpoints/cifar10/generator
    python -m ports.convert --in <LACE CIFAR10 dense_embedder_w checkpoint .pt> --out checkpoints/cifar10/label

LACE's settings: w = G.mapping(z, c = 0, ψ = 1)[:, 0]; one 10-class classifier on w; discrete energy
`logit_y − logsumexp(logits)`; PF-ODE from t = 1 to t = 0 with dopri5, rtol = atol = 1e-3; SGLD η = s = 0.01,
100 steps (scripts/run_cond_ode_sample.sh, run_cond_ld_sample.sh).
"""

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def get_config() -> dict:
    return {
        "world": "lace",
        "name": "cifar10",
        "checkpoint_dir": "checkpoints/cifar10",
        "generator": {"checkpoint": "generator", "source": "cifar10u-cifar-ada-best-fid.pkl"},
        "classifier_space": "w",          # LACE x_space 'cifar10_w' (the paper's setting); 'z' = cifar10_z
        "truncation_psi": 1.0,
        "t_end": 0.0,
        "dis_temp": 1.0,
        "noise_mode": "const",
        # matmul precision of the drift (mapping + latent classifiers): highest | tf32 | bf16 | auto (highest on
        # CPU, the measured pick on a GPU; lace_jax/models/precision.py, docs/performance.md)
        "precision": "auto",
        "use_attributes": ["label"],
        "attributes": {
            "label": {"kind": "discrete", "classes": CIFAR10_CLASSES, "checkpoint": "label",
                      "source": "LACE CIFAR10 DenseEmbedder checkpoint (.pt, train_classifier.py)"},
        },
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "joint"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        "expr": "label=cat",
        "batch_size": 64,
        # LACE's FID protocol (CIFAR10/eval_sampler.py; docs/fid.md), used by evaluate.py --fid_inception/--fid_ref:
        # 5,000 conditional samples per class (50,000 pooled: `fid_inception_all`), psi 1, the synthesis output fed
        # as floats (not quantised), against the statistics of the 50,000 CIFAR-10 training images.
        "fid": {"conditions": [f"label={c}" for c in CIFAR10_CLASSES], "samples_per_condition": 5000,
                "quantize": False, "reference": "CIFAR-10 training set (50,000 images)"},
    }
