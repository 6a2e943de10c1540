"""A small PyTorch reference of LACE's CIFAR-10 sampling pipeline, written for `benchmarks/sampling.py` only.

Written from the semantics of stylegan2-ada-pytorch (`Generator` in eval mode, float32, CPU reference ops), LACE
(`DenseEmbedder`, `CCF.get_cond_energy`, `VPODE`, `sample_q_ode`) and torchdiffeq (`odeint`). It takes state dicts
with the upstream key names, so the JAX side of the benchmark gets the *same* weights through the project's own
converters (`ports.stylegan2_ada.params_from_state_dict`, `ports.lace_classifier.params_from_state_dict`).

Never imported by `lace_jax/` or `ports/`: torch and torchdiffeq are benchmark-only dependencies (`pip install
.[bench]`). Self-check against the upstream fixtures:

    python benchmarks/torch_reference.py --check      # mapping, synthesis, DenseEmbedder, VPODE dopri5 NFE
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from collections.abc import Mapping as AnyMapping

import numpy as np
import torch
import torch.nn.functional as F

LRELU_GAIN = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------------------------
# Random weights with upstream names and init rules (stylegan2-ada `Generator`, LACE `DenseEmbedder`).

def ada_state_dict(init_kwargs: AnyMapping, seed: int = 0) -> dict[str, np.ndarray]:
    """A random `Generator.state_dict()` for `init_kwargs` (upstream key names and shapes, upstream-like init:
    raw weights N(0,1)/lr, affine biases 1), with small random biases/noise strengths so nothing is trivial."""
    rng = np.random.default_rng(seed)
    z_dim, c_dim, w_dim = init_kwargs["z_dim"], init_kwargs["c_dim"], init_kwargs["w_dim"]
    res, img_ch = init_kwargs["img_resolution"], init_kwargs["img_channels"]
    mk = dict(init_kwargs.get("mapping_kwargs", {}))
    sk = dict(init_kwargs.get("synthesis_kwargs", {}))
    n_layers = mk.get("num_layers", 8)
    lr = mk.get("lr_multiplier", 0.01)
    sd: dict[str, np.ndarray] = {}

    def normal(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    feats = w_dim
    if c_dim:
        sd["mapping.embed.weight"] = normal(w_dim, c_dim)
        sd["mapping.embed.bias"] = normal(w_dim, scale=0.1)
    in_f = z_dim + (w_dim if c_dim else 0)
    for i in range(n_layers):
        sd[f"mapping.fc{i}.weight"] = normal(feats, in_f, scale=1.0 / lr)
        sd[f"mapping.fc{i}.bias"] = normal(feats, scale=0.1 / lr)
        in_f = feats
    sd["mapping.w_avg"] = normal(w_dim, scale=0.5)
    if res == 0:
        return sd
    base, cmax = sk.get("channel_base", 32768), sk.get("channel_max", 512)
    resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    ch = {r: min(base // r, cmax) for r in resolutions}
    filt = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32)
    filt /= filt.sum()
    for r in resolutions:
        b = f"synthesis.b{r}"
        c_out = ch[r]
        c_in = ch[r // 2] if r > 4 else c_out
        sd[f"{b}.resample_filter"] = filt
        if r == 4:
            sd[f"{b}.const"] = normal(c_out, 4, 4)
        for name in (["conv1"] if r == 4 else ["conv0", "conv1"]):
            cin = c_in if name == "conv0" else c_out
            sd[f"{b}.{name}.weight"] = normal(c_out, cin, 3, 3)
            sd[f"{b}.{name}.bias"] = normal(c_out, scale=0.1)
            sd[f"{b}.{name}.noise_strength"] = np.float32(0.2 * rng.standard_normal())
            sd[f"{b}.{name}.noise_const"] = normal(r, r)
            sd[f"{b}.{name}.resample_filter"] = filt
            sd[f"{b}.{name}.affine.weight"] = normal(cin, w_dim)
            sd[f"{b}.{name}.affine.bias"] = 1.0 + normal(cin, scale=0.1)
        sd[f"{b}.torgb.weight"] = normal(img_ch, c_out, 1, 1)
        sd[f"{b}.torgb.bias"] = normal(img_ch, scale=0.1)
        sd[f"{b}.torgb.affine.weight"] = normal(c_out, w_dim)
        sd[f"{b}.torgb.affine.bias"] = 1.0 + normal(c_out, scale=0.1)
    return sd


def dense_embedder_state_dict(input_dim=512, up_dim=128, depth=4, num_classes=10, seed=1) -> dict[str, np.ndarray]:
    """A random LACE `DenseEmbedder(input_dim, up_dim, depth, num_classes)` state dict (keys `net.{3l}.*`,
    `linear.*`), made as the fixtures' classifiers were: PyTorch's default init (uniform ±1/√fan_in), then
    weights + 0.8/√fan_in·N(0,1) and biases + 0.1·N(0,1), so that the logits are far from flat."""
    rng = np.random.default_rng(seed)
    dims = [int(d) for d in np.linspace(input_dim, up_dim, depth).astype(int)] + [num_classes]
    sd = {}
    for l in range(len(dims) - 1):
        fan_in, out = dims[l], dims[l + 1]
        bound = 1.0 / math.sqrt(fan_in)
        w = rng.uniform(-bound, bound, (out, fan_in)) + 0.8 / math.sqrt(fan_in) * rng.standard_normal((out, fan_in))
        b = rng.uniform(-bound, bound, out) + 0.1 * rng.standard_normal(out)
        name = f"net.{3 * l}" if l < len(dims) - 2 else "linear"
        sd[f"{name}.weight"] = (w[:, :, None, None] if name != "linear" else w).astype(np.float32)
        sd[f"{name}.bias"] = b.astype(np.float32)
    return sd


# ---------------------------------------------------------------------------------------------------------------
# Networks (eval mode, float32).

def _t(sd, k, dtype=torch.float32):
    return torch.as_tensor(np.asarray(sd[k]), dtype=dtype)


def normalize_2nd_moment(x, eps=1e-8):
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class Mapping(torch.nn.Module):
    """stylegan2-ada `MappingNetwork` (no truncation beyond ψ = 1 needed here): z, c → w [B, w_dim]."""

    def __init__(self, sd, init_kwargs, dtype=torch.float32):
        super().__init__()
        mk = dict(init_kwargs.get("mapping_kwargs", {}))
        self.lr = mk.get("lr_multiplier", 0.01)
        self.n = mk.get("num_layers", 8)
        self.c_dim = init_kwargs["c_dim"]
        P = torch.nn.Parameter
        if self.c_dim:
            self.embed_w = P(_t(sd, "mapping.embed.weight", dtype), requires_grad=False)
            self.embed_b = P(_t(sd, "mapping.embed.bias", dtype), requires_grad=False)
        # Fold the runtime gains into the weights once (same maths as upstream's per-call multiply, up to rounding).
        self.ws = torch.nn.ParameterList()
        self.bs = torch.nn.ParameterList()
        for i in range(self.n):
            w = _t(sd, f"mapping.fc{i}.weight", dtype)
            self.ws.append(P(w * (self.lr / math.sqrt(w.shape[1])), requires_grad=False))
            self.bs.append(P(_t(sd, f"mapping.fc{i}.bias", dtype) * self.lr, requires_grad=False))
        self.dtype = dtype

    def forward(self, z, c=None):
        parts = [normalize_2nd_moment(z.to(self.dtype))]
        if self.c_dim:
            if c is None:
                c = torch.zeros(z.shape[0], self.c_dim, dtype=self.dtype, device=z.device)
            y = F.linear(c.to(self.dtype), self.embed_w * (1.0 / math.sqrt(self.c_dim)), self.embed_b)
            parts.append(normalize_2nd_moment(y))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for w, b in zip(self.ws, self.bs):
            x = F.leaky_relu(F.linear(x, w, b), 0.2) * LRELU_GAIN
        return x


class DenseEmbedder(torch.nn.Module):
    """LACE `DenseEmbedder(norm=None)`: 1×1 convolutions on `[B, C, 1, 1]` + LeakyReLU(0.2), then `linear`."""

    def __init__(self, sd, dtype=torch.float32):
        super().__init__()
        layers = []
        l = 0
        while f"net.{3 * l}.weight" in sd:
            conv = torch.nn.Conv2d(sd[f"net.{3 * l}.weight"].shape[1], sd[f"net.{3 * l}.weight"].shape[0], 1)
            conv.weight.data = _t(sd, f"net.{3 * l}.weight", dtype)
            conv.bias.data = _t(sd, f"net.{3 * l}.bias", dtype)
            layers += [conv, torch.nn.Identity(), torch.nn.LeakyReLU(0.2)]
            l += 1
        self.net = torch.nn.Sequential(*layers)
        self.linear = torch.nn.Linear(sd["linear.weight"].shape[1], sd["linear.weight"].shape[0])
        self.linear.weight.data = _t(sd, "linear.weight", dtype)
        self.linear.bias.data = _t(sd, "linear.bias", dtype)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.linear(self.net(x[:, :, None, None])[:, :, 0, 0])


def _upfirdn2d(x, f, up=1, pad=(0, 0, 0, 0), gain=1.0):
    """upfirdn2d for NCHW: zero-insertion upsampling, padding (px0, px1, py0, py1), depthwise FIR (symmetric f)."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(pad))
    k = (f * (gain ** (f.ndim / 2))).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k.flip([2, 3]), groups=c)


class Synthesis(torch.nn.Module):
    """stylegan2-ada `SynthesisNetwork`, architecture 'skip', eval mode: fused modulated convolution (per-sample
    weights, one grouped convolution) as upstream uses in `eval()` for float32, or the non-fused path."""

    def __init__(self, sd, init_kwargs, fused=True, dtype=torch.float32):
        super().__init__()
        sk = dict(init_kwargs.get("synthesis_kwargs", {}))
        self.clamp = sk.get("conv_clamp", None)
        self.res = init_kwargs["img_resolution"]
        self.resolutions = [2 ** i for i in range(2, int(math.log2(self.res)) + 1)]
        self.fused = fused
        self.dtype = dtype
        self.p = {k[len("synthesis."):]: _t(sd, k, dtype) for k in sd if k.startswith("synthesis.")}
        self.f = self.p["b4.resample_filter"]
        self.w_dim = init_kwargs["w_dim"]

    def to_device(self, device):
        self.p = {k: v.to(device) for k, v in self.p.items()}
        self.f = self.p["b4.resample_filter"]
        return self

    def _affine(self, name, w):
        aw, ab = self.p[f"{name}.affine.weight"], self.p[f"{name}.affine.bias"]
        return F.linear(w, aw * (1.0 / math.sqrt(aw.shape[1])), ab)

    def _modconv(self, x, weight, styles, demodulate, up, padding, noise=None):
        n, cin, h, wd = x.shape
        cout = weight.shape[0]
        wmod = weight[None] * styles[:, None, :, None, None]                       # [N, O, I, k, k]
        if demodulate:
            dcoefs = (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()               # [N, O]
        if self.fused:
            if demodulate:
                wmod = wmod * dcoefs[:, :, None, None, None]
            xg = x.reshape(1, n * cin, h, wd)
            if up == 1:
                y = F.conv2d(xg, wmod.reshape(n * cout, cin, *weight.shape[2:]), padding=padding, groups=n)
            else:
                wt = wmod.transpose(1, 2).reshape(n * cin, cout, *weight.shape[2:])
                y = F.conv_transpose2d(xg, wt, stride=2, groups=n)
                y = _upfirdn2d(y, self.f, pad=(1, 1, 1, 1), gain=4.0)
            y = y.reshape(n, cout, *y.shape[2:])
            if noise is not None:
                y = y + noise
            return y
        x = x * styles[:, :, None, None]
        if up == 1:
            y = F.conv2d(x, weight, padding=padding)
        else:
            y = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
            y = _upfirdn2d(y, self.f, pad=(1, 1, 1, 1), gain=4.0)
        if demodulate:
            y = y * dcoefs[:, :, None, None]
        if noise is not None:
            y = y + noise
        return y

    def _layer(self, name, x, w, up):
        styles = self._affine(name, w)
        noise = self.p[f"{name}.noise_const"] * self.p[f"{name}.noise_strength"]
        x = self._modconv(x, self.p[f"{name}.weight"], styles, True, up, 1, noise)
        x = F.leaky_relu(x + self.p[f"{name}.bias"][None, :, None, None], 0.2) * LRELU_GAIN
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x

    def _torgb(self, name, x, w):
        weight = self.p[f"{name}.weight"]
        styles = self._affine(name, w) * (1.0 / math.sqrt(weight.shape[1]))
        x = self._modconv(x, weight, styles, False, 1, 0) + self.p[f"{name}.bias"][None, :, None, None]
        if self.clamp is not None:
            x = x.clamp(-self.clamp, self.clamp)
        return x

    def forward(self, ws):
        """ws [B, num_ws, w_dim] → NCHW image."""
        ws = ws.to(self.dtype)
        n = ws.shape[0]
        x = self.p["b4.const"][None].repeat(n, 1, 1, 1)
        x = self._layer("b4.conv1", x, ws[:, 0], 1)
        img = self._torgb("b4.torgb", x, ws[:, 1])
        i = 1
        for r in self.resolutions[1:]:
            x = self._layer(f"b{r}.conv0", x, ws[:, i], 2)
            x = self._layer(f"b{r}.conv1", x, ws[:, i + 1], 1)
            img = _upfirdn2d(img, self.f, up=2, pad=(2, 1, 2, 1), gain=4.0)
            img = img + self._torgb(f"b{r}.torgb", x, ws[:, i + 2])
            i += 2
        return img

    @property
    def num_ws(self):
        return 2 * len(self.resolutions)


# ---------------------------------------------------------------------------------------------------------------
# LACE VP-ODE sampling (CIFAR-10: w-space classifier, discrete energy).

class VPODE(torch.nn.Module):
    """LACE `VPODE` for the CIFAR pipeline: `dz/dt = −½ β(t) ∇_z Σ_b energy_neg_b`, energy_neg = logit_y − lse."""

    def __init__(self, mapping, classifier, y, beta_min=0.1, beta_max=20.0):
        super().__init__()
        self.mapping, self.classifier, self.y = mapping, classifier, y
        self.beta_0, self.beta_1 = beta_min, beta_max
        self.n_evals = 0

    def cond_energy_neg(self, z):
        logits = self.classifier(self.mapping(z))
        return torch.gather(logits, 1, self.y[:, None])[:, 0] - torch.logsumexp(logits, dim=1)

    def forward(self, t, states):
        z = states[0]
        with torch.set_grad_enabled(True):
            z = z.detach().requires_grad_(True)
            beta_t = self.beta_0 + t * (self.beta_1 - self.beta_0)
            g = torch.autograd.grad(self.cond_energy_neg(z).sum(), [z])[0]
            dz = -0.5 * beta_t * g
        self.n_evals += 1
        return (dz,)


def sample_q_ode(vpode, z0, t_end=0.0, method="dopri5", rtol=1e-3, atol=1e-3, options=None):
    """LACE `sample_q_ode`: `odeint(vpode, (z,), linspace(1, t_end, 2), ...)`; returns (z_final, nfe)."""
    from torchdiffeq import odeint

    vpode.n_evals = 0
    times = torch.linspace(1.0, t_end, 2).to(z0.device)
    with torch.no_grad():
        out = odeint(vpode, (z0,), times, rtol=rtol, atol=atol, method=method, options=options)
    return out[0][-1], vpode.n_evals


# ---------------------------------------------------------------------------------------------------------------
# Self-check against the upstream fixtures.

def _check(fixtures: Path) -> int:
    import json

    torch.set_grad_enabled(False)
    ada = fixtures / "ada_cifar_small"
    kw = json.loads((ada / "config.json").read_text())["constructor_kwargs"]
    sd = dict(np.load(ada / "state_dict.npz"))
    vec = np.load(ada / "vectors.npz")
    m = Mapping(sd, kw)
    z, c = torch.tensor(vec["z"]), torch.tensor(vec["c"])
    w = m(z, c)
    errs = {"mapping_psi1": float((w - torch.tensor(vec["ws_psi1"][:, 0])).abs().max())}
    ws = torch.tensor(vec["ws_psi1"])
    for fused in (True, False):
        img = Synthesis(sd, kw, fused=fused)(ws)
        errs[f"synthesis_fused{int(fused)}"] = float((img - torch.tensor(vec["img_const_psi1"])).abs().max())
    lace = fixtures / "lace"
    lv, refs = np.load(lace / "vectors.npz"), np.load(lace / "sampler_refs.npz")
    clf = DenseEmbedder(dict(np.load(lace / "dense_embedder_cifar.npz")))
    errs["dense_embedder"] = float((clf(torch.tensor(lv["cifar_w"])) - torch.tensor(lv["cifar_logits"])).abs().max())
    y = torch.tensor(lv["cifar_y"])
    ode = VPODE(m, clf, y)
    with torch.enable_grad():
        zz = torch.tensor(lv["cifar_z"]).requires_grad_(True)
        errs["cond_energy"] = float((ode.cond_energy_neg(zz).detach() - torch.tensor(lv["cifar_cond_energy"])).abs().max())
    ode.y = torch.tensor(refs["cifar_y"])
    zf, nfe = sample_q_ode(ode, torch.tensor(refs["cifar_z_init"]))
    errs["dopri5_tol1e-3_z_final"] = float((zf - torch.tensor(refs["cifar_dopri5_tol1e-3_z_final"])).abs().max())
    errs["dopri5_nfe"] = [nfe, int(refs["cifar_dopri5_tol1e-3_nfe"])]
    print(json.dumps(errs, indent=1))
    ok = all(v < 1e-4 for k, v in errs.items() if k != "dopri5_nfe") and nfe == errs["dopri5_nfe"][1]
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    if "--check" in sys.argv:
        import os
        root = Path(os.environ.get("LACE_JAX_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
        sys.exit(_check(root))
    print(__doc__)
