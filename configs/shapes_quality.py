"""Fréchet distances of the default model in the judge's features (`lace_jax.training.quality`):
`python evaluate.py --config shapes_quality --set assets=lace_jax/assets/default` (out/evaluate/quality.json)."""


def get_config() -> dict:
    return {
        "kind": "quality",
        "num": 5000,                 # images per set
        "assets": None,              # an exported default model (generator + judge) ...
        "early": None,               # ... with a shapes_gan workdir whose early_ema_* snapshot is the bad reference
        "previous": None,            # ... and an earlier generator checkpoint to compare against
        "gan": None,                 # or training workdirs: shapes_gan,
        "judge": None,               # shapes_judge,
        "latent": None,              # shapes_latent (for w_avg; optional)
    }
