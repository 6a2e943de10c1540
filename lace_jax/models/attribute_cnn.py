"""The *judge*: an image attribute classifier for the shapes world.

One small CNN with a softmax head per discrete factor and a regression head for the continuous factors; its
penultimate features (the input of the heads) are returned too, for Fréchet distances in a space that knows the
shapes world. Input images are NCHW in [−1, 1] (the generator's boundary convention); NHWC inside.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class AttributeCNN(nn.Module):
    """`__call__(images[B,3,H,W]) -> {"logits": {name: [B,K]}, "values": [B, n_cont], "features": [B, F]}`.

    discrete: (name, num_classes) per discrete factor; continuous: names of the regressed factors (in column
    order of "values"); widths: channels of the three stride-2 stages; features: width of the penultimate layer.
    """
    discrete: Sequence[tuple[str, int]] = (("shape", 4), ("background", 3))
    continuous: Sequence[str] = ("size", "x", "y", "rotation", "hue")
    widths: Sequence[int] = (32, 64, 128)
    features: int = 128

    @nn.compact
    def __call__(self, images: jax.Array) -> dict:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"AttributeCNN expects NCHW RGB images, got shape {images.shape}")
        x = jnp.transpose(images, (0, 2, 3, 1))
        for i, w in enumerate(self.widths):
            x = nn.relu(nn.Conv(w, (3, 3), name=f"conv{i}a")(x))
            x = nn.relu(nn.Conv(w, (3, 3), strides=(2, 2), name=f"conv{i}b")(x))
        x = x.reshape(x.shape[0], -1)          # flatten keeps where things are (x, y are regressed)
        feats = nn.relu(nn.Dense(self.features, name="penultimate")(x))
        logits = {name: nn.Dense(k, name=f"head_{name}")(feats) for name, k in self.discrete}
        values = nn.Dense(len(self.continuous), name="head_continuous")(feats)
        return {"logits": logits, "values": values, "features": feats}


def predict(model: AttributeCNN, params, images: jax.Array) -> dict:
    """Hard predictions: class index per discrete factor and the regressed continuous values, by name."""
    out = model.apply({"params": params}, images)
    pred = {name: jnp.argmax(out["logits"][name], -1) for name, _ in model.discrete}
    pred.update({name: out["values"][:, i] for i, name in enumerate(model.continuous)})
    return pred
