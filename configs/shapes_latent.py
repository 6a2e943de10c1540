"""LACE latent classifiers for the shapes default model: label G samples with the judge, fit DenseEmbedders."""


def get_config() -> dict:
    return {
        "kind": "latent",
        "seed": 0,
        "gan_workdir": "runs/gan",
        "judge_workdir": "runs/judge",
        "n_train": 5000,
        "n_test": 1000,
        "spaces": ["w", "z"],
        "attributes": ["shape", "background", "size", "x", "y", "hue"],
        "up_dim": 32,            # DenseEmbedder dims linspace(64, 32, 4) = 64 → 53 → 42 → 32 (as LACE CIFAR)
        "depth": 4,
        "batch_size": 512,       # LACE's recipe: Adam 1e-4, linear warm-up, batch 512
        "lr": 1e-4,
        "warmup": 200,
        "steps": 1500,
        "log_every": 250,
    }
