"""LACE latent classifiers for the shapes default model: label G samples with the judge, fit DenseEmbedders.

The defaults are the shipped recipe (200k judged samples, DenseEmbedder 64 → 128 → 192 → 256, 60k steps of LACE's
Adam 1e-4 / batch 512). `assets` (a default-model directory) takes the generator and judge from a shipped model
instead of the `gan_workdir` / `judge_workdir` training runs.
"""


def get_config() -> dict:
    return {
        "kind": "latent",
        "seed": 0,
        "assets": None,          # e.g. lace_jax/assets/default: retrain the classifiers of a shipped model
        "gan_workdir": "runs/gan",
        "judge_workdir": "runs/judge",
        "n_train": 200000,
        "n_test": 10000,
        "spaces": ["w", "z"],
        "attributes": ["shape", "background", "size", "x", "y", "hue"],
        "up_dim": 256,           # DenseEmbedder dims linspace(64, 256, 4) = 64 → 128 → 192 → 256 (LACE's CIFAR
        "depth": 4,              # embedder narrows 512 → 128; a wider one fits the judge's shape labels better)
        "batch_size": 512,       # LACE's recipe: Adam 1e-4, linear warm-up, batch 512
        "lr": 1e-4,
        "warmup": 200,
        "steps": 60000,
        "log_every": 5000,
    }
