"""The shipped default StyleGAN2 on the shapes world, sized for a 2-core CPU budget (32×32, thin channels)."""


def get_config() -> dict:
    return {
        "kind": "gan",
        "seed": 0,
        "resolution": 32,
        "generator": {                       # fields of lace_jax.models.stylegan2.StyleGAN2Config
            "z_dim": 64,
            "w_dim": 64,
            "mapping_layers": 2,
            "lr_multiplier": 0.01,           # the mapping's learning-rate multiplier (ada's default)
            "channels": {4: 64, 8: 64, 16: 32, 32: 16},
            "architecture": "skip",
        },
        "d_channels": [16, 32, 64, 64],      # at resolutions 32, 16, 8, 4
        "batch_size": 32,
        "g_lr": 0.0025,
        "d_lr": 0.0025,
        "beta2": 0.99,
        "r1_gamma": 0.01,
        "r1_interval": 16,
        "ema_kimg": 10.0,
        "ema_rampup": 0.05,
        "steps": 100000,                     # in practice the wall budget ends the run; the card records steps
        "max_wall_s": 3300.0,
        "steps_per_call": "auto",            # iterations per jitted call: 1 on CPU, 100 on an accelerator
        "log_every": 50,
        "ckpt_every": 250,
        "early_snapshot_step": 250,          # EMA G kept for the 'badly trained' Fréchet reference
        "grid_size": 64,
        "grid_seed": 2024,
    }
