"""Convert user-brought PyTorch-world weights into a lace_jax orbax checkpoint. No torch needed.

    python -m ports.convert --in network-snapshot.pkl --out ckpt/ada        # stylegan2-ada (takes G_ema)
    python -m ports.convert --in 550000.pt --out ckpt/ffhq                  # rosinality (g_ema + latent_avg)
    python -m ports.convert --in best_valid_ckpt.pt --out ckpt/glasses      # LACE DenseEmbedder
    python -m ports.convert --in pt_inception-2015-12-05-6726825d.pth --out ckpt/inception   # FID Inception
    python -m ports.convert --in FILE --out DIR --kind ada|rosinality|lace|inception  # skip auto-detection

Writes `DIR/variables/` (orbax) + `DIR/lace_jax.json` (see `lace_jax.checkpoint`) and prints a summary. Bad input
exits with code 2 and a one-line reason; the output directory is only ever renamed into place once complete.
The kind is detected from the file's structure (parsing only, nothing is built or run): a network pickle with
`G_ema` → ada; a checkpoint with `g_ema` → rosinality; one with `state_dict`/`model_state_dict` → lace; a state dict
with pytorch-fid's Inception names (`Conv2d_1a_3x3.conv.weight`, `Mixed_7c.…`) → inception (the checkpoint has kind
'inception'; `lace_jax.metrics.fid.load_inception(DIR)` loads it); for `.npz` state dicts the key names decide (ada
needs its `config.json` beside the `.npz`).
"""
from __future__ import annotations

import argparse
import io
import pickletools
import sys
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

KINDS = ("ada", "rosinality", "lace", "inception")
_INCEPTION_MARKS = ("Conv2d_1a_3x3.conv.weight", "blocks.0.0.conv.weight")


class ConvertError(ValueError):
    """The input cannot be converted (the CLI turns it into exit code 2)."""


# --------------------------------------------------------------------------------------------------------------
# Detection (parsing only).

def _pickle_strings(data: bytes, max_pickles: int = 4) -> set[str]:
    """Text constants of the first pickles in `data` (a legacy torch.save file has magic, protocol, sys-info and
    then the main pickle), by parsing opcodes only: nothing is built or run."""
    out: set[str] = set()
    f = io.BytesIO(data)
    for _ in range(max_pickles):
        if f.tell() >= len(data):
            break
        try:
            for op, arg, _ in pickletools.genops(f):
                if isinstance(arg, str):
                    out.update(arg.split(" ") if op.name == "GLOBAL" else (arg,))
                if op.name == "STOP":
                    break
        except ValueError:
            break   # a broken pickle: the real reader gives the precise error
    return out


def _is_inception(names: set[str]) -> bool:
    return any(m in names for m in _INCEPTION_MARKS) or any(n.startswith("Mixed_7c.") for n in names)


def detect_kind(path: str | Path) -> str:
    """'ada', 'rosinality', 'lace' or 'inception' from the file's structure; ConvertError if it is none of them."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"input file not found: {path}")
    if path.suffix == ".npz":
        try:
            with np.load(path) as z:
                keys = set(z.files)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ConvertError(f"{path}: unreadable .npz ({e})") from None
        if any(k.startswith(("mapping.", "synthesis.")) for k in keys):
            return "ada"
        if "style.1.weight" in keys:
            return "rosinality"
        if _is_inception(keys):
            return "inception"
        if any(k.endswith(("linear.weight", "heads.weight")) for k in keys):
            return "lace"
        raise ConvertError(f"{path}: .npz keys match no known network ({sorted(keys)[:6]})")
    data = path.read_bytes()
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                pkl = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
                strings = _pickle_strings(zf.read(pkl[0])) if len(pkl) == 1 else set()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ConvertError(f"{path}: unreadable zip archive ({e}); truncated or corrupt?") from None
    else:
        strings = _pickle_strings(data)
    if "G_ema" in strings or "_reconstruct_persistent_obj" in strings:
        return "ada"
    if "g_ema" in strings:
        return "rosinality"
    if _is_inception(strings):
        return "inception"
    if "state_dict" in strings or "model_state_dict" in strings or any(
            s.endswith(("linear.weight", "heads.weight")) for s in strings):
        return "lace"
    raise ConvertError(f"{path}: not a stylegan2-ada network pickle (G_ema), a rosinality checkpoint (g_ema), a "
                       f"LACE classifier (state_dict) or pytorch-fid's Inception weights; pass --kind to force one")


# --------------------------------------------------------------------------------------------------------------
# Conversion.

def _read(inp: Path, kind: str) -> tuple[Any, Any, dict, dict]:
    """(config, variables, checkpoint extra, summary) of `inp` read as `kind`."""
    if kind in ("ada", "rosinality"):
        from ports import rosinality, stylegan2_ada

        loaded = (stylegan2_ada if kind == "ada" else rosinality).load(inp)
        cfg = loaded.config
        extra = {"converter": kind, "skipped": list(loaded.skipped), "notes": list(getattr(loaded, "notes", ()))}
        summary = {"kind": kind, "resolution": cfg.img_resolution, "z_dim": cfg.z_dim, "w_dim": cfg.w_dim,
                   "c_dim": cfg.c_dim, "num_ws": cfg.num_ws, "skipped": list(loaded.skipped), "notes": extra["notes"]}
        return cfg, loaded.variables, extra, summary
    if kind == "inception":
        from ports import inception

        variables = inception.load(inp)
        digest = inception.file_sha256(inp)
        notes = [n for n in (inception.name_hash_note(inp, digest),) if n]
        extra = {"converter": "inception", "skipped": list(inception.IGNORED) + ["*.bn.num_batches_tracked"],
                 "notes": notes, "sha256": digest}
        return ({"model": "fid_inception_v3", "features": 2048}, variables, extra,
                {"kind": kind, "skipped": extra["skipped"], "notes": notes})
    from ports import lace_classifier

    loaded = lace_classifier.load(inp)
    extra = {"converter": "lace", "layout": loaded.layout, "entry": loaded.entry}
    return (loaded.config, {"params": loaded.params}, extra,
            {"kind": kind, "layout": loaded.layout, "classes": loaded.num_outputs, "entry": loaded.entry})


def _resolve(inp: Path, kind: str) -> str:
    if kind == "auto":
        kind = detect_kind(inp)
    if kind not in KINDS:
        raise ConvertError(f"unknown kind {kind!r} (expected auto, {', '.join(KINDS)})")
    if not inp.is_file():
        raise ConvertError(f"input file not found: {inp}")
    return kind


def _guarded(inp: Path, kind: str):
    """`_read` with the reader's and converters' errors turned into one ConvertError naming the file."""
    from ports import torch_pickle

    try:
        return _read(inp, kind)
    except torch_pickle.TorchFileError as e:
        raise ConvertError(f"{inp}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, ConvertError):
            raise
        raise ConvertError(f"{inp}: cannot convert as {kind}: {e}") from None


def load(inp: str | Path, kind: str = "auto") -> tuple[str, Any, Any]:
    """Read user-brought weights without torch and without running anything inside them: `(kind, config,
    variables)` as `lace_jax.checkpoint.load` returns them for the converted checkpoint (kind 'ada' and
    'rosinality' give a `StyleGAN2Config`, 'lace' a DenseEmbedder config, 'inception' the FID network's)."""
    inp = Path(inp)
    kind = _resolve(inp, kind)
    cfg, variables, _, _ = _guarded(inp, kind)
    return kind, cfg, variables


def convert(inp: str | Path, out: str | Path, kind: str = "auto", *, overwrite: bool = False) -> dict:
    """Convert `inp` into an orbax checkpoint at `out`; returns the summary dict that the CLI prints."""
    from lace_jax import checkpoint, records

    inp, out = Path(inp), Path(out)
    kind = _resolve(inp, kind)
    if out.exists() and not overwrite:
        raise ConvertError(f"output {out} already exists (use --overwrite to replace it)")
    cfg, variables, extra, summary = _guarded(inp, kind)
    source = records.file_identity(inp)      # name, size, sha256: no absolute path in a file people share
    if kind in ("ada", "rosinality"):
        checkpoint.save_generator(out, cfg, variables, source=source, extra=extra, overwrite=overwrite)
    elif kind == "inception":
        checkpoint.save(out, variables, cfg, "inception", source=source, extra=extra, overwrite=overwrite)
    else:
        checkpoint.save_classifier(out, cfg, variables["params"], source=source, extra=extra, overwrite=overwrite)
    meta = checkpoint.read_meta(out)
    summary.update(parameter_count=meta["parameter_count"], out=str(out))
    return summary


def format_summary(s: dict) -> str:
    if s["kind"] == "lace":
        what = f"LACE classifier, layout {s['layout']} ({s['classes']} outputs, from '{s['entry']}')"
    elif s["kind"] == "inception":
        what = f"FID Inception (pytorch-fid pool3, 2048 features); skipped {', '.join(s['skipped'])}"
        if s.get("notes"):
            what += f"; {'; '.join(s['notes'])}"
    else:
        what = (f"{s['kind']} generator: resolution {s['resolution']}, z_dim {s['z_dim']}, w_dim {s['w_dim']}, "
                f"c_dim {s['c_dim']}, num_ws {s['num_ws']}")
        if s.get("skipped"):
            what += f"; skipped {', '.join(s['skipped'])}"
        if s.get("notes"):
            what += f"; {'; '.join(s['notes'])}"
    return f"{what}; {s['parameter_count']:,} parameters → {s['out']}"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input)."""
    parser = argparse.ArgumentParser(prog="python -m ports.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--in", dest="inp", metavar="FILE", required=True, help="weights file (.pkl, .pt, .npz)")
    parser.add_argument("--out", metavar="DIR", required=True, help="output checkpoint directory")
    parser.add_argument("--kind", default="auto", choices=("auto",) + KINDS)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    from lace_jax.checkpoint import CheckpointError

    try:
        summary = convert(args.inp, args.out, args.kind, overwrite=args.overwrite)
    except (ConvertError, CheckpointError, FileNotFoundError) as e:
        print(f"convert: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
