"""GAN recipe variants trained side by side in ONE program, scored by the fit judge (issue 21).

    python experiments/gan_recipes.py --work /tmp/gan_recipes --out $OUT --budget_s 540          # one GPU call
    python experiments/gan_recipes.py --tiny --work /tmp/recipes_tiny --out /tmp/recipes_tiny/out   # CPU rehearsal

Every variant starts from the same train state (default: a copy of `experiments/gan_mid_state`, which is never
written; `--start scratch` builds a fresh one from `--config`) and differs only in traced hyperparameters: R1 γ,
the D and G learning rates (as multiples of the config's) and the seed of the iterations' randomness. The grid is
the product `--gammas` × `--d_lr_scales` × `--g_lr_scales` × `--seeds` (default 3 × 3 = 9 variants). They train
as one vmapped, jitted block of `--steps_per_call` iterations (`lace_jax.training.gan.make_variants_block`: one
compilation, no Python dispatch per iteration) until the training share of `--budget_s` is spent; D(real),
D(fake), the losses and R1 are logged per variant (means over each log window).

Then each variant's EMA generator is scored on `--score_num` samples by `quality.measure_generator` (the fit
judge's realistic fraction and per-shape frequencies, the Fréchet distance in the CNN judge's features) and drawn
as a 64-sample grid. The best variant (`pick_best`: the highest realistic fraction, but among the variants within
its sampling error the lowest FD) is saved as a resumable workdir laid out as
`experiments/gan_mid_state` (config.json with its hyperparameters, checkpoints/<step>, gan_run.json); results.json
gives the `train.py` command that continues it.

Written into `--out` (at most a few files, as a device call brings back): results.json, log.txt, grids.png (every
variant's grid, titled) and bundle.tar.part* (15 MB parts of a tar: best_state/ and grids/<variant>.png). The
unpacked best_state/ and grids/ stay under `--work`.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lace_jax.config import apply_overrides, load_config  # noqa: E402
from lace_jax.data import shapes  # noqa: E402
from lace_jax.models import stylegan2 as sg  # noqa: E402
from lace_jax.runs.images import add_title, make_grid, save_png  # noqa: E402
from lace_jax.training import gan, gan_run, loop, quality  # noqa: E402

# fields every variant shares: they shape the compiled program or the state
SHARED = ("resolution", "generator", "d_channels", "batch_size", "beta2", "r1_interval", "ema_kimg", "ema_rampup")
GRID_SEED, GRID_NUM = 2024, 64
PART_BYTES = 15 * 2 ** 20


def variant_grid(gammas, d_lr_scales, g_lr_scales, seeds) -> list[tuple[str, dict]]:
    """(name, {"r1_gamma", "d_lr_scale", "g_lr_scale", "seed"}) for every combination, in product order."""
    out = []
    for gamma, ds, gs, seed in itertools.product(gammas, d_lr_scales, g_lr_scales, seeds):
        name = f"r1_{gamma:g}_dlr_x{ds:g}" + (f"_glr_x{gs:g}" if len(g_lr_scales) > 1 or gs != 1 else "") + \
            (f"_seed{seed}" if len(seeds) > 1 else "")
        out.append((name, {"r1_gamma": float(gamma), "d_lr_scale": float(ds), "g_lr_scale": float(gs),
                           "seed": int(seed)}))
    return out


def pick_best(scores: dict, num: int) -> str:
    """The variant with the lowest FD among those whose realistic fraction is within two standard errors (at `num`
    samples) of the highest. Realistic fractions near 10 % differ by noise alone at 2,000 samples (±1.3 points),
    and ranking by them first would pick a variant for that noise (docs/default_model.md, the CPU A/B)."""
    top = max(s["realistic"] for s in scores.values())
    margin = 2.0 * math.sqrt(max(top * (1.0 - top), 1.0 / num) / num)
    near = [n for n, s in scores.items() if s["realistic"] >= top - margin]
    return min(near, key=lambda n: scores[n]["fd_judge_features"])


def variant_config(base: dict, spec: dict) -> dict:
    """The shapes_gan config of one variant (what its saved workdir's config.json records)."""
    return dict(base, r1_gamma=spec["r1_gamma"], d_lr=base["d_lr"] * spec["d_lr_scale"],
                g_lr=base["g_lr"] * spec["g_lr_scale"], seed=spec["seed"])


class Log:
    def __init__(self, path: Path):
        self.path, self.t0 = path, time.time()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, line: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {line}"
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


def start_state(a, base: dict, work: Path, template, log) -> tuple[dict, int]:
    """(train state, step) to start every variant from: the newest checkpoint of a copy of `--start`, or the
    fresh `template` (`--start scratch`)."""
    if a.start == "scratch":
        return template, 0
    src = Path(a.start)
    theirs = loop.run_config(src)
    as_json = lambda cfg, k: json.dumps(json.loads(json.dumps(cfg.get(k))), sort_keys=True)   # int keys as JSON's
    differ = [k for k in SHARED if as_json(theirs, k) != as_json(base, k)]
    if differ:
        raise SystemExit(f"--start {src}: its config differs from --config {a.config} in {differ}; pass the config "
                         "it was trained with")
    copy = work / "start"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(src, copy)
    cfg = dict(theirs)
    state = loop.restore_newest(copy, template, cfg, "GAN")
    log(f"start: {src} at step {cfg['trained_steps']} (a copy in {copy})")
    return state, int(cfg["trained_steps"])


def train(a, base: dict, specs, work: Path, deadline: float, log) -> dict:
    """Train every variant side by side until the wall-clock `deadline`; returns states, history and speed."""
    t0 = time.time()
    _, buffers, _, template, g_apply, d_apply, _ = gan_run.build(base)
    h = gan_run.hyper(base)
    state0, step0 = start_state(a, base, work, template, log)
    keys = [jax.random.split(jax.random.PRNGKey(s["seed"]), 3)[2] for _, s in specs]   # as gan_run.build's
    recipes = gan.stack_recipes([gan.recipe(h, k, r1_gamma=s["r1_gamma"], d_lr=h.d_lr * s["d_lr_scale"],
                                            g_lr=h.g_lr * s["g_lr_scale"]) for k, (_, s) in zip(keys, specs)])
    states = gan.stack_recipes([state0] * len(specs))
    res = int(base["resolution"])
    run = gan.make_variants_block(g_apply, d_apply, lambda k, b: shapes.sample(k, b, res)[0], h, a.steps_per_call)
    r1s = jnp.zeros((len(specs),), jnp.float32)
    names = [n for n, _ in specs]
    history, window, pending = [], [], None
    step, first_s, t_log, step_log = step0, None, None, step0
    while True:
        n = min(a.steps_per_call, a.log_every - (step - step0) % a.log_every)
        states, r1s, m = run(states, recipes, step, n, r1s)
        window.append((m, n))
        step += n
        if pending is not None:                      # wait for the previous block: one block queued ahead at most
            jax.block_until_ready(pending)
        pending = r1s
        if first_s is None:
            jax.block_until_ready(r1s)
            first_s = time.time() - t0
            t_log, step_log = time.time(), step
            log(f"first block of {n} iterations × {len(specs)} variants done {first_s:.1f} s after the start "
                "(state loading and compilation included)")
            window = []
            if time.time() > deadline:
                break
            continue
        done = time.time() > deadline
        if (step - step0) % a.log_every == 0 or done:
            jax.block_until_ready(r1s)
            rows = {k: np.concatenate([np.asarray(mm[k])[:, :nn] for mm, nn in window], axis=1) for k in gan.METRICS}
            now = time.time()
            rate = (step - step_log) / max(now - t_log, 1e-9)
            entry = {"step": step, "wall_s": round(now - t0, 1), "it_per_s_per_variant": round(rate, 1),
                     "img_per_s_total": round(rate * h.batch_size * len(specs)),
                     "variants": {name: {k: round(float(np.mean(rows[k][v])), 4) for k in gan.METRICS}
                                  for v, name in enumerate(names)}}
            history.append(entry)
            log(f"step {step} ({step - step0} this run) {rate:.1f} it/s per variant, "
                f"{entry['img_per_s_total']} img/s in all")
            for name, mv in entry["variants"].items():
                log(f"  {name:28s} D(real) {mv['d_real']:+.3f} D(fake) {mv['d_fake']:+.3f} "
                    f"loss_g {mv['loss_g']:.3f} loss_d {mv['loss_d']:.3f} r1 {mv['r1']:.4f}")
            window, t_log, step_log = [], now, step
        if done:
            break
    jax.block_until_ready(states)
    return {"states": states, "buffers": buffers, "step": step, "step0": step0, "history": history,
            "first_block_s": round(first_s, 1), "train_wall_s": round(time.time() - t0, 1),
            "iterations_this_run": step - step0, "h": h}


def score(a, base: dict, specs, trained: dict, work: Path, log) -> dict:
    """Fit-judge scores, FD and a grid of each variant's EMA generator."""
    from lace_jax.worlds.shapes import load_default

    model = load_default()
    g_cfg = gan_run.generator_config(base)
    grid_z = jax.random.normal(jax.random.PRNGKey(GRID_SEED), (GRID_NUM, g_cfg.z_dim))
    render = jax.jit(lambda p: sg.generate(g_cfg, {"params": p, "buffers": trained["buffers"]}, grid_z))
    (work / "grids").mkdir(parents=True, exist_ok=True)
    scores = {}
    for v, (name, _) in enumerate(specs):
        t = time.time()
        ema = gan.unstack(trained["states"]["g_ema"], v)
        g_vars = {"params": ema, "buffers": trained["buffers"]}
        r = quality.measure_generator(g_cfg, g_vars, model.judge_model, model.judge_params, a.score_num, fit=True)
        save_png(work / "grids" / f"{name}.png", make_grid(np.asarray(render(ema))))
        fj = r["fit_judge"]
        scores[name] = {"realistic": fj["unconditional_realistic"],
                        "realistic_shape_fractions_of_all": fj["realistic_shape_fractions_of_all"],
                        "realistic_shape_frequencies": fj["realistic_shape_frequencies"],
                        "fd_judge_features": r["fd_generated_vs_real"], "fd_floor": r["fd_floor_real_vs_real"],
                        "fit_judge": fj, "cnn_judge_label_freq": r["generated_label_freq"],
                        "wall_s": round(time.time() - t, 1)}
        log(f"score {name}: realistic {fj['unconditional_realistic']:.3f} "
            f"({', '.join(f'{k} {v:.3f}' for k, v in fj['realistic_shape_fractions_of_all'].items())}) "
            f"FD {r['fd_generated_vs_real']:.1f} (floor {r['fd_floor_real_vs_real']:.2f}) in {time.time() - t:.0f} s")
    return scores


def save_best(base: dict, spec: dict, trained: dict, index: int, dest: Path, log) -> Path:
    """The variant's train state as a resumable shapes_gan workdir (as experiments/gan_mid_state)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    cfg = variant_config(base, spec)
    (dest / "config.json").write_text(json.dumps(cfg, indent=2))
    manager = loop.checkpoint_manager(dest / "checkpoints")
    loop.save(manager, trained["step"], jax.device_get(gan.unstack(trained["states"], index)))
    manager.close()
    with open(dest / "gan_run.json", "a") as fh:
        fh.write(json.dumps({"steps": trained["step"], "kimg": trained["step"] * cfg["batch_size"] / 1000,
                             "wall_s_this_run": trained["train_wall_s"],
                             "note": "experiments/gan_recipes.py: one of vmapped variants"}) + "\n")
    log(f"saved the best variant's state at step {trained['step']} in {dest}")
    return dest


def sheet(work: Path, names: list[str], scores: dict) -> np.ndarray:
    """Every variant's grid with a title line, tiled into one image."""
    tiles = []
    for n in names:
        img = np.asarray(Image.open(work / "grids" / f"{n}.png").convert("RGB"))
        s = scores.get(n)
        title = n if s is None else f"{n}  real {100 * s['realistic']:.1f}%  FD {s['fd_judge_features']:.0f}"
        tiles.append(add_title(img, title))
    cols = math.ceil(math.sqrt(len(tiles)))
    h, w = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    canvas = np.full((math.ceil(len(tiles) / cols) * (h + 6), cols * (w + 6), 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas[r * (h + 6):r * (h + 6) + t.shape[0], c * (w + 6):c * (w + 6) + t.shape[1]] = t
    return canvas


def pack(work: Path, out: Path, results: dict, log) -> None:
    """results.json, log.txt, grids.png and the bundle parts into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    names = [n for n in results["variants"] if (work / "grids" / f"{n}.png").exists()]
    if names:
        save_png(out / "grids.png", sheet(work, names, {n: results["variants"][n].get("score") for n in names
                                                         if results["variants"][n].get("score")}))
    for old in out.glob("bundle.tar.part*"):
        old.unlink()
    bundle = work / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        for sub in ("best_state", "grids"):
            if (work / sub).exists():
                tar.add(work / sub, arcname=sub)
    with open(bundle, "rb") as fh:
        for i, chunk in enumerate(iter(lambda: fh.read(PART_BYTES), b"")):
            (out / f"bundle.tar.part{i}").write_bytes(chunk)
    shutil.copy(work / "log.txt", out / "log.txt")
    log(f"packed results.json, grids.png and {bundle.stat().st_size / 2 ** 20:.1f} MB of bundle into {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="scratch folder (the start state's copy, grids, best_state)")
    ap.add_argument("--out", required=True, help="results.json, log.txt, grids.png, bundle.tar.part*")
    ap.add_argument("--start", default=None,
                    help="a shapes_gan workdir to start from (default experiments/gan_mid_state; tiny: scratch) or "
                         "'scratch' for a fresh state of --config")
    ap.add_argument("--config", default=None, help="config of the start state (default shapes_gan_mid; tiny: "
                                                   "shapes_gan_tiny)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--gammas", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="R1 γ values")
    ap.add_argument("--d_lr_scales", type=float, nargs="+", default=[1.0, 0.5, 0.25], help="× the config's d_lr")
    ap.add_argument("--g_lr_scales", type=float, nargs="+", default=[1.0], help="× the config's g_lr")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="iteration seeds (default the config's)")
    ap.add_argument("--budget_s", type=float, default=None, help="wall budget of the whole call (540; tiny 180)")
    ap.add_argument("--train_s", type=float, default=None,
                    help="seconds from the start of this script at which training stops, compilation included "
                         "(default: the budget less a reserve for scoring and packing)")
    ap.add_argument("--steps_per_call", type=int, default=None, help="iterations per jitted call (100; tiny 8)")
    ap.add_argument("--log_every", type=int, default=None, help="iterations per log line (1000; tiny 16)")
    ap.add_argument("--score_num", type=int, default=None, help="samples scored per variant (2000; tiny 64)")
    ap.add_argument("--tiny", action="store_true", help="CPU rehearsal: configs/shapes_gan_tiny from scratch, "
                                                        "γ {0.01, 1} × d_lr {1, 0.5}, a short budget")
    a = ap.parse_args(argv)
    t0 = time.time()
    if a.tiny:
        a.start = a.start or "scratch"
        a.config = a.config or "shapes_gan_tiny"
        if a.gammas == ap.get_default("gammas"):
            a.gammas = [0.01, 1.0]
        if a.d_lr_scales == ap.get_default("d_lr_scales"):
            a.d_lr_scales = [1.0, 0.5]
    a.start = a.start or str(REPO / "experiments" / "gan_mid_state")
    a.config = a.config or "shapes_gan_mid"
    a.steps_per_call = a.steps_per_call or (8 if a.tiny else 100)
    a.log_every = a.log_every or (16 if a.tiny else 1000)
    a.score_num = a.score_num or (64 if a.tiny else 2000)
    a.budget_s = a.budget_s or (180.0 if a.tiny else 540.0)
    if a.log_every % a.steps_per_call:
        raise SystemExit(f"--log_every ({a.log_every}) must be a multiple of --steps_per_call ({a.steps_per_call})")
    base = apply_overrides(load_config(a.config), a.set)
    if base.get("kind") != "gan":
        raise SystemExit(f"--config {a.config} is not a shapes GAN config")
    seeds = a.seeds or [int(base["seed"])]
    specs = variant_grid(a.gammas, a.d_lr_scales, a.g_lr_scales, seeds)
    # reserve: scoring (judges' compilation once, then per variant) and packing; measured on CPU for the tiny run
    reserve = (60.0 + 4.0 * len(specs)) if a.tiny else (60.0 + 10.0 * len(specs) * a.score_num / 2000)
    a.train_s = a.train_s if a.train_s is not None else a.budget_s - reserve
    if a.train_s <= 0:
        raise SystemExit(f"--budget_s {a.budget_s} leaves no training time after a {reserve:.0f} s reserve")
    work, out = Path(a.work), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    log = Log(work / "log.txt")
    log(f"{len(specs)} variants: {', '.join(n for n, _ in specs)}; training {a.train_s:.0f} s of a "
        f"{a.budget_s:.0f} s budget on {jax.devices()[0].device_kind}")
    start = Path(a.start).resolve()
    results = {"config": a.config, "overrides": a.set,
               "start": a.start if a.start == "scratch" else
               str(start.relative_to(REPO)) if start.is_relative_to(REPO) else start.name,
               "device": jax.devices()[0].device_kind, "budget_s": a.budget_s, "train_s": a.train_s,
               "steps_per_call": a.steps_per_call, "score_num": a.score_num,
               "variants": {n: {"spec": s, "g_lr": base["g_lr"] * s["g_lr_scale"],
                                "d_lr": base["d_lr"] * s["d_lr_scale"]} for n, s in specs}}
    trained = train(a, base, specs, work, t0 + a.train_s, log)
    results.update({k: trained[k] for k in ("step0", "first_block_s", "train_wall_s", "iterations_this_run",
                                             "history")})
    results["final_step"] = trained["step"]
    pack(work, out, results, log)
    scores = score(a, base, specs, trained, work, log)
    for n, s in scores.items():
        results["variants"][n]["score"] = s
    best = pick_best(scores, a.score_num)
    index = [n for n, _ in specs].index(best)
    spec = dict(specs)[best]
    save_best(base, spec, trained, index, work / "best_state", log)
    cfg = variant_config(base, spec)
    sets = " ".join(f"--set {k}={cfg[k]!r}" for k in ("r1_gamma", "d_lr", "g_lr", "seed")) + \
        "".join(f" --set {o}" for o in a.set)
    results["best"] = {"name": best, "score": {k: scores[best][k] for k in ("realistic", "fd_judge_features")},
                       "state_dir": "best_state (in bundle.tar)",
                       "continue": f"python train.py --config {a.config} --workdir <best_state> {sets} "
                                   "--set max_wall_s=..."}
    results["wall_s"] = round(time.time() - t0, 1)
    log(f"best: {best} (realistic {scores[best]['realistic']:.3f}, FD {scores[best]['fd_judge_features']:.1f}); "
        f"continue: {results['best']['continue']}")
    pack(work, out, results, log)


if __name__ == "__main__":
    main()
