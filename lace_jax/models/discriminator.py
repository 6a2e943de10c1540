"""StyleGAN2 discriminator (resnet architecture), sized for the small shapes model.

Follows stylegan2-ada-pytorch's `Discriminator` semantics: equalised learning rate (weights ~ N(0, 1) scaled by
1/√fan_in at run time), leaky ReLU (0.2) with gain √2, blocks of fromRGB (first block only) → conv3×3 →
conv3×3 with FIR-filtered 2× downsampling, plus a 1×1 downsampled skip without bias, summed with gain √½;
an epilogue at 4×4 with minibatch standard deviation (1 channel), conv3×3, a dense layer and a linear output.
Images are NCHW in [−1, 1] at the boundary (the generator's convention), NHWC inside. Unconditional only.
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.models import ops

LRELU_GAIN = math.sqrt(2.0)
FIR_121 = (1.0, 3.0, 3.0, 1.0)


def _lrelu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, 0.2 * x) * LRELU_GAIN


class EqConv(nn.Module):
    """Conv with equalised lr; `down=2` uses `ops.conv2d_resample` (FIR [1,3,3,1] blur + stride), as upstream."""
    features: int
    kernel: int
    down: int = 1
    bias: bool = True
    act: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:          # NHWC
        cin = x.shape[-1]
        w = self.param("weight", nn.initializers.normal(1.0), (self.kernel, self.kernel, cin, self.features))
        w = w * (1.0 / math.sqrt(cin * self.kernel * self.kernel))
        f = ops.setup_filter(FIR_121) if self.down > 1 else None
        y = ops.conv2d_resample(x, w, f, down=self.down, padding=self.kernel // 2)
        if self.bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,))
        return _lrelu(y) if self.act else y


class EqDense(nn.Module):
    """Dense layer with equalised learning rate."""
    features: int
    act: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("weight", nn.initializers.normal(1.0), (x.shape[-1], self.features))
        y = x @ (w / math.sqrt(x.shape[-1])) + self.param("bias", nn.initializers.zeros, (self.features,))
        return _lrelu(y) if self.act else y


def minibatch_std(x: jax.Array, group_size: int = 4) -> jax.Array:
    """Append one channel: the std over groups of `group_size` samples, averaged over features and pixels.

    As upstream, sample i is grouped with samples i + k·(N/G) (reshape [G, N/G, ...]); N must divide by G.
    """
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch_std: batch size {n} is not a multiple of the group size {g}")
    y = x.reshape(g, n // g, h, w, c)
    y = y - y.mean(0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), 0) + 1e-8)          # [N/G, H, W, C]
    y = y.mean(axis=(1, 2, 3))                                # [N/G]
    y = jnp.tile(y, (g,))[:, None, None, None]               # sample i gets group i mod N/G
    return jnp.concatenate([x, jnp.broadcast_to(y, (n, h, w, 1))], -1)


class Discriminator(nn.Module):
    """`__call__(images[B,3,R,R]) -> logits[B]`; `channels[i]` is the width at resolution R / 2^i (down to 4)."""
    resolution: int = 32
    channels: Sequence[int] = (64, 128, 128, 128)
    mbstd_group: int = 4

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (self.resolution,) * 2:
            raise ValueError(f"Discriminator({self.resolution}) expects NCHW images [B,3,{self.resolution},"
                             f"{self.resolution}], got shape {images.shape}")
        n_blocks = int(round(np.log2(self.resolution))) - 2
        if len(self.channels) != n_blocks + 1:
            raise ValueError(f"Discriminator: need {n_blocks + 1} channel widths for resolution "
                             f"{self.resolution}, got {len(self.channels)}")
        x = jnp.transpose(images, (0, 2, 3, 1))
        x = EqConv(self.channels[0], 1, name="fromrgb")(x)
        for i in range(n_blocks):
            res = self.resolution >> i
            cin, cout = self.channels[i], self.channels[i + 1]
            skip = EqConv(cout, 1, down=2, bias=False, act=False, name=f"b{res}_skip")(x)
            y = EqConv(cin, 3, name=f"b{res}_conv0")(x)
            y = EqConv(cout, 3, down=2, name=f"b{res}_conv1")(y)
            x = (skip + y) * math.sqrt(0.5)
        x = minibatch_std(x, self.mbstd_group)
        x = EqConv(self.channels[-1], 3, name="b4_conv")(x)
        x = EqDense(self.channels[-1], name="b4_fc")(x.reshape(x.shape[0], -1))
        return EqDense(1, act=False, name="b4_out")(x)[:, 0]



def init(disc: Discriminator, key: jax.Array) -> dict:
    """`disc`'s parameters with its modules' initialisers (weights N(0, 1), biases 0), the weights from one normal
    draw (`ops.init_from_rules`), as `stylegan2.init` does for G."""
    x = jax.ShapeDtypeStruct((4, 3, disc.resolution, disc.resolution), jnp.float32)
    shapes = jax.eval_shape(lambda k, x: disc.init(k, x)["params"], key, x)
    return ops.init_from_rules(key, shapes, lambda path: ("normal", 1.0) if path[-1] == "weight" else ("const", 0.0))
