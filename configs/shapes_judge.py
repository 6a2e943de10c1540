"""The image judge for the shapes world: a small CNN trained on fresh renders (CPU budget)."""


def get_config() -> dict:
    return {
        "kind": "judge",
        "seed": 0,
        "resolution": 32,
        "widths": [32, 64, 128],
        "features": 128,
        "batch_size": 128,
        "steps": 1000,
        "warmup": 100,
        "lr": 1e-3,
        "reg_weight": 10.0,
        "log_every": 100,
        "ckpt_every": 500,
        "stop_after": None,          # stop at this step (same schedule); None = run all `steps`
        "max_wall_s": 2400.0,
        "eval_num": 5000,
        "eval_seed": 777,
    }
