"""Assemble (or patch) a default-model directory from training workdirs (`lace_jax.training.export`):
`python train.py --config shapes_export --workdir runs/export --set gan=runs/gan --set judge=runs/judge
--set latent=runs/latent`."""


def get_config() -> dict:
    return {
        "kind": "export",
        "gan": None,                 # shapes_gan workdir
        "judge": None,               # shapes_judge workdir
        "latent": None,              # shapes_latent workdir
        "out": "lace_jax/assets/default",
        "card": None,                # JSON file merged into model_card.json (commands, wall times, metrics)
        "generator_only": False,     # replace only the generator (drops the latent classifiers: retrain them)
        "classifiers_only": False,   # replace only the latent classifiers (and their card metrics)
    }
