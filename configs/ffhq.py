"""LACE on FFHQ (NVlabs/LACE `FFHQ/`): rosinality StyleGAN2 (config-f, 1024 px), one DenseEmbedder per attribute on
the truncated w.

Bring and convert the weights (sizes are read from the checkpoints):

    python -m ports.convert --in stylegan2-ffhq-config-f.pt --out checkpoints/ffhq/generator
    python -m ports.convert --in best_valid_ckpt_glasses.pt --out checkpoints/ffhq/glasses     # one per attribute

LACE's settings: w = tl + ψ(style(z) − tl) with ψ = 0.7 (scripts pass --truncation 0.7; tl = the generator's
mean latent: here the converted `latent_avg`, LACE recomputes `mean_latent(2048)` at run time); discrete energy
`logit_y/τ − logsumexp`, continuous `−‖f − y‖²/(2·0.1²)`; PF-ODE from t = 1 to t = 1e-3, dopri5 rtol = atol = 1e-3;
SGLD η = s = 0.01, 100 steps. Attribute kinds and class counts are LACE's `ffhq_data.att_dict` (continuous values
are in [0, 1]); use_attributes lists those whose classifiers you converted (LACE's order matters for its digit
syntax).
"""

# name -> number of outputs in LACE (1 = continuous)
FFHQ_ATTRIBUTES = {"yaw": 1, "smile": 2, "gender": 2, "age": 1, "glasses": 2, "light3": 1, "pitch": 1,
                   "haircolor": 5, "beard": 2, "bald": 1, "light0": 1, "width": 1, "height": 1, "roll": 1}


def get_config() -> dict:
    attributes = {}
    for name, n in FFHQ_ATTRIBUTES.items():
        spec = {"kind": "continuous" if n == 1 else "discrete", "checkpoint": name,
                "source": f"best_valid_ckpt_{name}.pt"}
        if n == 1:
            spec["value_range"] = [0.0, 1.0]
        attributes[name] = spec
    return {
        "world": "lace",
        "name": "ffhq",
        "checkpoint_dir": "checkpoints/ffhq",
        "generator": {"checkpoint": "generator", "source": "stylegan2-ffhq-config-f.pt"},
        "classifier_space": "w",
        "truncation_psi": 0.7,
        "t_end": 1e-3,
        "dis_temp": 1.0,
        "noise_mode": "const",
        # matmul precision of the drift (mapping + latent classifiers): highest | tf32 | bf16 | auto (highest on
        # CPU, the measured pick on a GPU; lace_jax/models/precision.py, docs/performance.md)
        "precision": "auto",
        "use_attributes": ["glasses", "yaw", "age", "smile"],
        "attributes": attributes,
        "sampler": {"name": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3, "batch_mode": "joint"},
        "sgld": {"num_steps": 100, "step_size": 1e-2, "noise_scale": 1e-2},
        # LACE's FID protocol (FFHQ/eval_sampler.py; docs/fid.md), used by evaluate.py --fid_inception/--fid_ref:
        # 1,000 samples per condition at psi 0.7 (`truncation_psi`), floats (not quantised), against the statistics
        # of 1,000 *generated* images (LACE's inception_ffhq_gen_1k.pkl, which --fid_ref reads).
        "fid": {"samples_per_condition": 1000, "quantize": False,
                "reference": "1,000 images of the FFHQ generator (LACE's inception_ffhq_gen_1k.pkl)"},
        "expr": "glasses=1 & smile=1 & age=0.76",
        # sequential editing (scripts/run_seq_edit_sample.sh: --truncation 0.5, no --reweight flag)
        "seq_edit": {"reg_z": 0.04, "reg_logits": 0.01, "reweight": False, "truncation_psi": 0.5},
        "batch_size": 16,
    }
