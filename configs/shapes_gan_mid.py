"""The GPU A/B's winner (experiments/gan_ab.py, docs/default_model.md): the shapes GAN with wider layers at 8–32 px
(G {4: 128, 8: 128, 16: 64, 32: 32}, D [32, 64, 128, 128]) at batch 128, otherwise `shapes_gan`.

Its train state after 12,375 iterations (1.58 M images, 4.3 minutes of training on one H200) is kept in
`experiments/gan_mid_state`; continue a copy of it with
`python train.py --config shapes_gan_mid --workdir <copy> --set max_wall_s=...`, or try recipes on it with
`experiments/gan_recipes.py`."""
from configs import shapes_gan


def get_config() -> dict:
    config = shapes_gan.get_config()
    config["generator"]["channels"] = {4: 128, 8: 128, 16: 64, 32: 32}
    config.update({
        "d_channels": [32, 64, 128, 128],
        "batch_size": 128,
        "ckpt_every": 1000000,          # an accelerator makes ~100 iterations/s: save at the end of the wall budget
        "log_every": 200,
        "early_snapshot_step": -1,
        "max_wall_s": 480.0,
    })
    return config
