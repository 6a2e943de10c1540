"""A toy-size shapes GAN (32 px as the judges need, a few channels, batch 8) for CPU rehearsals of the GPU
scripts: `benchmarks/gan_train.py --tiny`, `experiments/gan_recipes.py --tiny`. Not a model anyone should keep."""
from configs import shapes_gan


def get_config() -> dict:
    config = shapes_gan.get_config()
    config["generator"].update(z_dim=16, w_dim=16, mapping_layers=1, channels={4: 16, 8: 16, 16: 8, 32: 8})
    config.update({"d_channels": [8, 8, 16, 16], "batch_size": 8, "r1_interval": 4, "ema_kimg": 0.1,
                   "steps_per_call": 8, "log_every": 8, "ckpt_every": 1000000, "early_snapshot_step": -1,
                   "grid_size": 16, "max_wall_s": 60.0})
    return config
