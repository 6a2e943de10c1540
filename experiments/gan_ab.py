"""GAN recipe A/B on one accelerator, the winner's longer run, and the default model rebuilt from it (issue 21).

    python experiments/gan_ab.py run --work /tmp/gan_ab --out $OUT --budget_s 540      # one GPU call
    python experiments/gan_ab.py run --work /tmp/rehearsal --out /tmp/rehearsal/out --budget_s 420 --tiny
    python experiments/gan_ab.py score --workdir runs/gan --num 2000 --out score.json      # one GAN workdir
    python experiments/gan_ab.py rebuild --gan runs/best_state --work /tmp/rebuild --out /tmp/rebuild/out
                                                       # phase 4 alone, around any trained shapes_gan workdir

`run`, in phases, each a subprocess of the project's own CLIs (what runs here is what users run):

1. A/B: every recipe of `VARIANTS` trains from scratch at the same time (`train.py --config shapes_gan --set ...`)
   for the same wall time, so each gets the same share of the accelerator.
2. Score: each variant's EMA generator on `score_num` unconditional samples (`score`): the fit judge's realistic
   fraction and shape frequencies, and the Fréchet distance in the CNN judge's features (`quality`).
3. Long: the variant with the highest realistic fraction resumes alone until what is left of the budget is what
   the rest needs (its final score is the quality report of step 4).
4. Rebuild: its EMA generator replaces the shipped one in a copy of the assets (`export --generator_only`);
   quality on 10,000 samples by both judges; latent classifiers (`shapes_latent`, `export --classifiers_only`);
   temperature calibration (`shapes_calibrate`); the control table (`shapes_control`) if time is left.

Everything is packed into `--out` as soon as it exists (a run cut short still brings back what finished):
results.json (scores, img/s, phase times), log.txt, grids.tar (each variant's newest EMA grid), and bundle.tar
split into 15 MB parts (the winner's newest train state, the rebuilt assets, the reports).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WIDE = ["generator.channels={4:128,8:128,16:128,32:64}", "d_channels=[64,128,128,128]"]
MID = ["generator.channels={4:128,8:128,16:64,32:32}", "d_channels=[32,64,128,128]"]
# name -> overrides of configs/shapes_gan (the shipped recipe: G {4:64, 8:64, 16:32, 32:16}, D [16,32,64,64], batch 32)
VARIANTS = {
    "shipped_b128": ["batch_size=128"],
    "mid_b128": ["batch_size=128"] + MID,
    "wide_b128": ["batch_size=128"] + WIDE,
    "wide_b256": ["batch_size=256"] + WIDE,
}
COMMON = ["steps=100000000", "ckpt_every=1000000", "log_every=200", "early_snapshot_step=-1"]
TINY = {  # a CPU rehearsal of every phase at toy sizes
    "variants": {"shipped_b16": ["batch_size=16"], "mid_b16": ["batch_size=16"] + MID},
    "common": ["steps=100000000", "ckpt_every=1000000", "log_every=5", "early_snapshot_step=-1", "grid_size=16"],
    "score_num": 256, "quality": ["num=300"], "calibrate": ["num=500"], "control": ["num=4"],
    "latent": ["n_train=2000", "n_test=500", "steps=100", "log_every=50", "warmup=10"],
}
FULL = {"variants": VARIANTS, "common": COMMON, "score_num": 2000, "quality": ["num=10000"],
        "calibrate": ["num=20000"], "control": ["num=256"], "latent": []}
# seconds each later phase is given (measured on the H200 where known; generous: a phase is skipped, not cut)
RESERVE = {"export": 25, "quality": 45, "latent": 90, "calibrate": 30, "control": 90, "pack": 10}


def _env(work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1",
               XLA_PYTHON_CLIENT_PREALLOCATE="false",                    # variants share the accelerator
               JAX_COMPILATION_CACHE_DIR=str(work / "jax_cache"))         # the long phase resumes without compiling
    return env


class Runner:
    """Runs the phases, logging to work/log.txt, with a wall-clock deadline."""

    def __init__(self, work: Path, out: Path, budget_s: float, sizes: dict):
        self.work, self.out, self.sizes = work, out, sizes
        self.t0 = time.time()
        self.deadline = self.t0 + budget_s
        self.results: dict = {"budget_s": budget_s, "phases": {}, "variants": {}, "skipped": []}
        work.mkdir(parents=True, exist_ok=True)
        out.mkdir(parents=True, exist_ok=True)
        self.log_path = work / "log.txt"

    def log(self, line: str) -> None:
        line = f"[{time.time() - self.t0:6.1f}s] {line}"
        print(line, flush=True)
        with open(self.log_path, "a") as fh:
            fh.write(line + "\n")

    def left(self) -> float:
        return self.deadline - time.time()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        self.log(f"start {name}: {' '.join(argv)}")
        fh = open(self.work / f"{name}.log", "w")
        return subprocess.Popen([sys.executable] + argv, cwd=REPO, env=_env(self.work), stdout=fh,
                                stderr=subprocess.STDOUT)

    def wait(self, procs: dict, limit_s: float) -> dict:
        """Wait for every process up to `limit_s` seconds, then kill what is left; name -> return code."""
        end = time.time() + limit_s
        codes = {}
        for name, p in procs.items():
            try:
                codes[name] = p.wait(timeout=max(end - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                codes[name] = p.wait()
                self.log(f"{name}: killed at its limit")
            if codes[name]:
                self.log(f"{name}: exit {codes[name]}; tail:\n" + self.tail(name))
        return codes

    def tail(self, name: str, n: int = 15) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def step(self, name: str, argv: list[str], need_s: float) -> bool:
        """Run one phase if `need_s` seconds are left (else record it as skipped); True when it succeeded."""
        if self.left() < need_s:
            self.results["skipped"].append(name)
            self.log(f"skip {name}: {self.left():.0f}s left, {need_s:.0f}s needed")
            return False
        t = time.time()
        code = self.wait({name: self.start(name, argv)}, self.left() - RESERVE["pack"])[name]
        self.results["phases"][name] = {"wall_s": round(time.time() - t, 1), "exit": code}
        return code == 0

    def train(self, name: str, overrides: list[str], wall_s: float) -> subprocess.Popen:
        sets = [a for o in self.sizes["common"] + overrides + [f"max_wall_s={wall_s:.0f}"] for a in ("--set", o)]
        return self.start(f"train_{name}", ["train.py", "--config", "shapes_gan", "--workdir",
                                             str(self.work / name)] + sets)

    def rates(self, name: str) -> dict:
        text = (self.work / f"train_{name}.log").read_text(errors="replace")
        rates = [float(r) for r in re.findall(r"([0-9.]+) img/s", text)]
        steps = [int(s) for s in re.findall(r"gan step +([0-9]+)", text)]
        return {"img_per_s_last": rates[-1] if rates else None,
                "img_per_s_median": sorted(rates)[len(rates) // 2] if rates else None,
                "last_logged_step": steps[-1] if steps else None}

    def score(self, names: list[str], tag: str) -> None:
        procs = {f"score_{tag}_{n}": self.start(f"score_{tag}_{n}", [
            "experiments/gan_ab.py", "score", "--workdir", str(self.work / n), "--num", str(self.sizes["score_num"]),
            "--out", str(self.work / n / f"score_{tag}.json")]) for n in names}
        t = time.time()
        self.wait(procs, max(min(self.left() - 30, 240), 30))
        self.results["phases"][f"score_{tag}"] = {"wall_s": round(time.time() - t, 1)}
        for n in names:
            path = self.work / n / f"score_{tag}.json"
            if path.exists():
                self.results["variants"].setdefault(n, {})[f"score_{tag}"] = json.loads(path.read_text())

    def pack(self) -> None:
        """Write results.json, log.txt, grids.tar and bundle.tar parts into `out` (replacing earlier ones)."""
        self.results["wall_s"] = round(time.time() - self.t0, 1)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2))
        shutil.copy(self.log_path, self.out / "log.txt")
        with tarfile.open(self.out / "grids.tar", "w") as tar:
            for v in self.results["variants"]:
                grids = sorted((self.work / v / "samples").glob("ema_*.png"))
                for g in grids[-2:] + [p for p in (self.work / v).glob("score_*.png")]:
                    tar.add(g, arcname=f"{v}/{g.name}")
        for old in self.out.glob("bundle.tar.part*"):
            old.unlink()
        bundle = self.work / "bundle.tar"
        with tarfile.open(bundle, "w") as tar:
            win = self.results.get("winner")
            if win:
                wdir = self.work / win
                steps = sorted((wdir / "checkpoints").glob("[0-9]*"), key=lambda p: int(p.name))
                for p in [wdir / "config.json", wdir / "gan_run.json"] + steps[-1:]:
                    if p.exists():
                        tar.add(p, arcname=f"gan_state/{p.relative_to(wdir)}")
            for sub in ("assets", "quality", "control"):
                if (self.work / sub).exists():
                    tar.add(self.work / sub, arcname=sub)
            for sub in ("latent", "calibrate"):
                for p in (self.work / sub).glob("*.json"):
                    tar.add(p, arcname=f"{sub}/{p.name}")
            for p in self.work.glob("*.log"):
                tar.add(p, arcname=f"logs/{p.name}")
        with open(bundle, "rb") as fh:
            for i, chunk in enumerate(iter(lambda: fh.read(15 * 2 ** 20), b"")):
                (self.out / f"bundle.tar.part{i}").write_bytes(chunk)
        self.log(f"packed {bundle.stat().st_size / 2 ** 20:.1f} MB into {self.out}")


def run(a: argparse.Namespace) -> None:
    sizes = TINY if a.tiny else FULL
    r = Runner(Path(a.work), Path(a.out), a.budget_s, sizes)
    variants = sizes["variants"]
    r.results["overrides"] = {"common": sizes["common"], "variants": variants}

    # 1. A/B: all variants at once, the same wall time each
    t = time.time()
    procs = {f"train_{n}": r.train(n, o, a.ab_s) for n, o in variants.items()}
    r.wait(procs, a.ab_s + 240)
    r.results["phases"]["ab"] = {"wall_s": round(time.time() - t, 1), "train_wall_s": a.ab_s}
    for n in variants:
        r.results["variants"].setdefault(n, {})["ab_rates"] = r.rates(n)
    # 2. score them
    r.score(list(variants), "ab")
    r.pack()

    def key(n):
        s = r.results["variants"][n].get("score_ab")
        return (s["fit_judge"]["unconditional_realistic"], -s["fd_generated_vs_real"]) if s else (-1.0, 0.0)

    winner = max(variants, key=key)
    r.results["winner"] = winner
    r.log(f"winner {winner}: " + json.dumps({n: key(n) for n in variants}))
    # 3. the winner alone
    later = sum(RESERVE[k] for k in ("export", "quality", "latent", "calibrate", "pack"))
    long_s = r.left() - later
    if long_s > 20:
        t = time.time()
        r.wait({f"train_{winner}": r.train(winner, variants[winner], long_s)}, long_s + 120)
        r.results["phases"]["long"] = {"wall_s": round(time.time() - t, 1), "train_wall_s": round(long_s)}
        r.results["variants"][winner]["long_rates"] = r.rates(winner)
    else:
        r.results["skipped"].append("long")
    r.pack()
    # 4. rebuild the default model around it
    rebuild_assets(r, r.work / winner, sizes)


def rebuild_assets(r: Runner, gan_dir: Path, sizes: dict) -> bool:
    """A copy of the shipped assets (`r.work/assets`) rebuilt around the EMA generator of the shapes_gan workdir
    `gan_dir`: export, quality by both judges, latent classifiers, their export, calibration, control table.
    Each phase runs only if the previous one succeeded and its reserve fits the deadline; True when all ran."""
    assets = r.work / "assets"
    if assets.exists():
        shutil.rmtree(assets)
    shutil.copytree(REPO / "lace_jax" / "assets" / "default", assets)
    ok = r.step("export_generator", ["train.py", "--config", "shapes_export", "--workdir", str(r.work / "export"),
                                     "--set", f"gan={gan_dir}", "--set", "generator_only=True",
                                     "--set", f"out={assets}"], RESERVE["export"])
    if ok:
        r.step("quality", ["evaluate.py", "--config", "shapes_quality", "--out_dir", str(r.work / "quality"),
                           "--set", f"assets={assets}"] + [x for s in sizes["quality"] for x in ("--set", s)],
               RESERVE["quality"])
        r.pack()
        ok = r.step("latent", ["train.py", "--config", "shapes_latent", "--workdir", str(r.work / "latent"),
                               "--set", f"assets={assets}"] + [x for s in sizes["latent"] for x in ("--set", s)],
                    RESERVE["latent"])
    if ok:
        ok = r.step("export_classifiers", ["train.py", "--config", "shapes_export", "--workdir",
                                           str(r.work / "export"), "--set", f"latent={r.work / 'latent'}",
                                           "--set", "classifiers_only=True", "--set", f"out={assets}"], 20)
    if ok:
        r.pack()
        ok = r.step("calibrate", ["train.py", "--config", "shapes_calibrate", "--workdir", str(r.work / "calibrate"),
                                  "--set", f"assets={assets}"] + [x for s in sizes["calibrate"] for x in ("--set", s)],
                    RESERVE["calibrate"])
    if ok:
        r.pack()
        ok = r.step("control", ["evaluate.py", "--config", "shapes_control", "--out_dir", str(r.work / "control"),
                                "--set", f"assets={assets}"] + [x for s in sizes["control"] for x in ("--set", s)],
                    RESERVE["control"])
    r.pack()
    return ok


def rebuild(a: argparse.Namespace) -> None:
    """`rebuild`: the default model rebuilt around a trained GAN workdir (e.g. the `best_state` of
    experiments/gan_recipes.py), no deadline but `--budget_s`; the rebuilt assets are `--work/assets`."""
    sizes = TINY if a.tiny else FULL
    r = Runner(Path(a.work), Path(a.out), a.budget_s, sizes)
    r.results["winner"] = None
    r.results["gan"] = Path(a.gan).name
    r.log(f"rebuild around {a.gan}")
    ok = rebuild_assets(r, Path(a.gan).resolve(), sizes)
    r.log("rebuilt: " + ("every phase succeeded" if ok else "stopped early; see results.json phases/skipped"))
    if not ok:
        sys.exit(1)


def score(a: argparse.Namespace) -> None:
    """Score one shapes_gan workdir's EMA generator: `quality.measure_generator` (both judges) and a sample grid."""
    import jax
    import numpy as np

    from lace_jax.models import stylegan2 as sg
    from lace_jax.runs.images import make_grid, save_png
    from lace_jax.training import gan_run, quality
    from lace_jax.worlds.shapes import load_default

    t = time.time()
    judge = load_default()
    g_cfg, g_vars, gcfg = gan_run.load_gan_ema(a.workdir)
    result = quality.measure_generator(g_cfg, g_vars, judge.judge_model, judge.judge_params, a.num)
    result.update({"gan_steps": gcfg["trained_steps"], "kimg": gcfg["trained_steps"] * gcfg["batch_size"] / 1000,
                   "wall_s": round(time.time() - t, 1), "device": jax.devices()[0].device_kind})
    Path(a.out).write_text(json.dumps(result, indent=2))
    z = jax.random.normal(jax.random.PRNGKey(2024), (64, g_cfg.z_dim))
    save_png(Path(a.out).with_suffix(".png"), make_grid(np.asarray(sg.generate(g_cfg, g_vars, z))))
    print(json.dumps({k: result[k] for k in ("gan_steps", "kimg", "fd_generated_vs_real", "fit_judge")}))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--budget_s", type=float, default=540.0)
    p.add_argument("--ab_s", type=float, default=110.0, help="training wall time of each variant in the A/B")
    p.add_argument("--tiny", action="store_true", help="toy sizes: rehearse every phase on a CPU")
    p = sub.add_parser("rebuild", help="the default model rebuilt around a trained shapes_gan workdir")
    p.add_argument("--gan", required=True, help="a shapes_gan workdir (checkpoints/, config.json)")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--budget_s", type=float, default=4 * 3600.0, help="skip phases whose reserve no longer fits")
    p.add_argument("--tiny", action="store_true", help="toy sizes: rehearse every phase on a CPU")
    p = sub.add_parser("score")
    p.add_argument("--workdir", required=True)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    {"run": run, "rebuild": rebuild, "score": score}[a.cmd](a)


if __name__ == "__main__":
    main()
