"""Continue the shipped generator's GAN run: the same model and optimiser settings as `shapes_gan`, started from a
trained generator (`init_from`) with a fresh discriminator that trains alone for `d_warmup_steps` first.

The first run's discriminator and optimiser states were not kept, only its exported EMA generator, so this is a
restart of D and Adam, not an exact resume; the command is in the model card."""
from configs import shapes_gan


def get_config() -> dict:
    config = shapes_gan.get_config()
    config.update({
        # the shipped EMA generator (13,247 iterations of the first run); point it at a copy before an export
        # --generator_only overwrites it, e.g. --set init_from=runs/gan_run1_generator
        "init_from": "lace_jax/assets/default/generator",
        "d_warmup_steps": 500,
        "seed": 1,                                 # new D init and new data/noise stream
        "max_wall_s": 4800.0,
        "early_snapshot_step": -1,
    })
    return config
