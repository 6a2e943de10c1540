"""Shared test helpers: the LACE pipelines of the reference fixtures (`../shared/fixtures/lace/`), built from the
real generator mapping (`lace_jax.models.stylegan2` via `ports/`) and the real `DenseEmbedder`.

* CIFAR: `w = G.mapping(z, c = zeros[10], ψ = 1)[:, 0]` of `ada_cifar_small`; classifier `dense_embedder_cifar`.
* FFHQ: `w = tl + 0.7·(style(z) − tl)` of `rosinality_small` (`tl` = its `truncation_latent`); attributes
  `glasses` (discrete, 2 classes, index 0) and `yaw` (continuous, index 1).

Every energy here is a per-sample *conditional* energy `z[64] -> scalar` in our sign convention:
`E_cond = −(LACE's conditional energy_neg)`; the prior ½‖z‖² is not included (`energy.with_prior` adds it).
Per-sample targets: the `*_batch` helpers return `energy.BatchedEnergy`s (use `energy.value/grad`).

    from tests.lace_pipelines import cifar_cond_energy, ffhq_cond_energy, ffhq_seq_energy
    e = cifar_cond_energy(3)                       # z[64] -> scalar
    E = energy.grad(cifar_cond_energy_batch(ys), zs)
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from lace_jax import energy as E
from lace_jax.models.classifiers import LatentClassifier, MappingW
from ports.lace_classifier import params_from_state_dict as dense_embedder_params_from_state_dict
from ports import rosinality, stylegan2_ada
from tests.conftest import fixtures_dir

BETA_MIN, BETA_MAX = 0.1, 20.0
FFHQ_TRUNCATION = 0.7
SEQ_REG_Z, SEQ_REG_LOGITS, SEQ_INDICES = 0.04, 0.01, (1,)


def beta(t):
    """LACE VPODE β(t) = β_min + t(β_max − β_min)."""
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def vpode_drift(cond_energy, z, t):
    """LACE `VPODE` drift for a batch: `½ β(t) ∇E_cond(z)` (= −½β∇ energy_neg), `z[B, 64]`."""
    return 0.5 * beta(t) * E.grad(cond_energy, z)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_embedder(path: Path, g=None) -> LatentClassifier:
    config, variables = dense_embedder_params_from_state_dict(_npz(path))
    return LatentClassifier.create(config, jnp_tree(variables), g=g)


def jnp_tree(tree):
    import jax
    return jax.tree_util.tree_map(jnp.asarray, tree)


class CifarPipeline(NamedTuple):
    g: MappingW                 # z[64] -> w[64]
    classifier: LatentClassifier  # z[64] -> logits[10] (through g)
    attribute: E.Attribute


class FFHQPipeline(NamedTuple):
    g: MappingW
    glasses: LatentClassifier   # z -> logits [2] (head 0)
    yaw: LatentClassifier       # z -> prediction [1] (head 0)
    attributes: tuple[E.Attribute, E.Attribute]   # (glasses, yaw), LACE's attribute order


@functools.lru_cache(maxsize=4)
def cifar_pipeline(root: str | None = None) -> CifarPipeline:
    root = Path(root) if root else fixtures_dir()
    loaded = stylegan2_ada.load(root / "ada_cifar_small" / "state_dict.npz")
    g = MappingW.create(loaded.config, jnp_tree(loaded.variables), c=np.zeros(loaded.config.c_dim, np.float32),
                        truncation_psi=1.0)
    clf = load_embedder(root / "lace" / "dense_embedder_cifar.npz", g=g)
    return CifarPipeline(g, clf, E.Attribute.discrete(clf, clf.num_classes))


@functools.lru_cache(maxsize=4)
def ffhq_pipeline(root: str | None = None) -> FFHQPipeline:
    root = Path(root) if root else fixtures_dir()
    d = root / "rosinality_small"
    tl = np.load(d / "vectors.npz")["truncation_latent"]
    cfg, variables = rosinality.params_from_state_dict(_npz(d / "state_dict.npz"), latent_avg=tl)
    g = MappingW.create(cfg, jnp_tree(variables), truncation_psi=FFHQ_TRUNCATION)
    glasses = load_embedder(root / "lace" / "dense_embedder_glasses.npz", g=g).select(0)
    yaw = load_embedder(root / "lace" / "dense_embedder_yaw.npz", g=g).select(0)
    attrs = (E.Attribute.discrete(glasses, 2, classes=("no", "yes")),
             E.Attribute.continuous(yaw, value_range=(0.0, 1.0)))
    return FFHQPipeline(g, glasses, yaw, attrs)


def cifar_cond_energy(y, *, root: str | None = None) -> E.Energy:
    """CIFAR `E_cond(z) = −(logit_y − logsumexp(logits))` of class `y` (LACE CIFAR `get_cond_energy`)."""
    return cifar_pipeline(root).attribute.energy(y)


def cifar_cond_energy_batch(ys: Sequence, *, root: str | None = None) -> E.BatchedEnergy:
    """Per-sample CIFAR conditional energies, classes `ys[B]`."""
    return E.per_sample(lambda y: cifar_cond_energy(y, root=root), np.asarray(ys))


def ffhq_cond_energy(ys, expr: str = "", *, seq_indices: Sequence[int] = (), reweight: bool = True,
                     dis_temp=None, root: str | None = None) -> E.Energy:
    """FFHQ `E_cond = −get_cond_energy(z, ys, seq_indices, reweight, dis_temp)` with CCF `expr` ('' = AND).
    `ys`: one target per selected attribute (glasses class, yaw value)."""
    return E.lace_conditional(ffhq_pipeline(root).attributes, list(ys), expr=expr, seq_indices=seq_indices,
                              reweight=reweight, dis_temp=dis_temp)


def ffhq_cond_energy_batch(ys, expr: str = "", **kw) -> E.BatchedEnergy:
    """Per-sample FFHQ conditional energies, `ys[B, n_selected]`."""
    return E.per_sample(lambda y: ffhq_cond_energy(list(y), expr, **kw), np.asarray(ys, np.float32))


def ffhq_seq_energy(ys_seq, z_anchor, *, reg_z: float = SEQ_REG_Z, reg_logits: float = SEQ_REG_LOGITS,
                    seq_indices: Sequence[int] = SEQ_INDICES, reweight: bool = True,
                    root: str | None = None) -> E.Energy:
    """The sequential-editing conditional energy of `sampler_refs` (LACE `VPODE(reg_z=0.04, reg_logits=0.01,
    seq_indices=[1], reweight=True)` with anchor `z_anchor[64]`): 10 × yaw energy + 0.04(‖g(z) − g(z_a)‖² +
    ‖z − z_a‖²) + 0.01‖f_glasses(g(z)) − f_glasses(g(z_a))‖². `ys_seq`: targets of the selected attributes."""
    p = ffhq_pipeline(root)
    return E.lace_sequential(p.attributes, list(ys_seq), z_anchor=z_anchor, g=p.g, reg_z=reg_z,
                             reg_logits=reg_logits, seq_indices=seq_indices, reweight=reweight)


def ffhq_seq_energy_batch(ys_seq, z_anchor, **kw) -> E.BatchedEnergy:
    """Per-sample sequential-editing energies: `ys_seq[B, n_selected]`, anchors `z_anchor[B, 64]`."""
    return E.per_sample(lambda y, za: ffhq_seq_energy(list(y), za, **kw), np.asarray(ys_seq, np.float32),
                        np.asarray(z_anchor, np.float32))
