"""lace_jax.worlds and the LACE configs: toy2d, clear missing-checkpoint errors, worlds built from converted fixtures
reproducing LACE's reference energies."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as en
from lace_jax import worlds
from lace_jax.config import load_config

LACE_CONFIGS = ("cifar10", "ffhq", "afhq_cat", "metfaces")


def test_toy2d_world():
    w = worlds.world_from_config("toy2d")
    assert w.name == "toy2d" and w.latent_dim == 2 and w.render is None and w.mapping is None
    assert set(w.attributes) == {"cluster", "right", "top", "radius", "x"}
    assert w.sampler_options().t_end == 0.0 and w.sampler_options(rtol=1e-5).rtol == 1e-5
    e = en.parse(w.expr, w.attributes)
    assert np.isfinite(float(e(jnp.array([1.0, 1.0]))))


@pytest.mark.parametrize("name", LACE_CONFIGS)
def test_config_without_checkpoints_names_file_and_command(name, tmp_path):
    cfg = load_config(name)
    assert cfg["world"] == "lace" and cfg["sampler"]["rtol"] == cfg["sampler"]["atol"] == 1e-3
    assert cfg["t_end"] == (0.0 if name == "cifar10" else 1e-3)
    assert cfg["truncation_psi"] == (1.0 if name == "cifar10" else 0.7)
    for a in cfg["use_attributes"]:
        assert a in cfg["attributes"]
    cfg["checkpoint_dir"] = str(tmp_path / "ckpt")
    with pytest.raises(worlds.MissingCheckpointError) as info:
        worlds.world_from_config(cfg)
    msg = str(info.value)
    expected = tmp_path / "ckpt" / "generator"
    assert f"{expected}/lace_jax.json" in msg
    assert f"python -m ports.convert --in <path to your {cfg['generator']['source']}> --out {expected}" in msg
    assert isinstance(info.value, FileNotFoundError)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, fixtures):
    """The fixture networks converted as a user would (`ports.convert`), in one checkpoint folder."""
    from ports.convert import convert

    root = tmp_path_factory.mktemp("ckpt")
    convert(fixtures / "ada_cifar_small" / "network-snapshot.pkl", root / "cifar" / "generator")
    convert(fixtures / "lace" / "dense_embedder_cifar.pt", root / "cifar" / "label")
    convert(fixtures / "rosinality_small" / "checkpoint.pt", root / "ffhq" / "generator")
    convert(fixtures / "lace" / "best_valid_ckpt_glasses.pt", root / "ffhq" / "glasses")
    convert(fixtures / "lace" / "best_valid_ckpt_yaw.pt", root / "ffhq" / "yaw")
    return root


def test_cifar10_world_from_converted_fixtures(converted, lace_vectors):
    cfg = load_config("cifar10")
    cfg["checkpoint_dir"] = str(converted / "cifar")
    w = worlds.world_from_config(cfg)
    assert w.latent_dim == 64 and w.t_end == 0.0 and w.truncation_psi == 1.0     # sizes from the checkpoints
    label = w.attributes["label"]
    assert label.kind == "discrete" and label.num_classes == 10 and label.classes[3] == "cat"
    z = jnp.asarray(lace_vectors["cifar_z"])
    ys = lace_vectors["cifar_y"]
    np.testing.assert_allclose(np.asarray(jax.vmap(w.mapping)(z)), lace_vectors["cifar_w"], rtol=1e-5, atol=1e-5)
    cond = en.stack([label.energy(int(y)) for y in ys])
    # LACE's get_cond_energy is energy_neg (larger = more likely); ours is E = −energy_neg
    np.testing.assert_allclose(np.asarray(en.value(cond, z)), -lace_vectors["cifar_cond_energy"], rtol=1e-5,
                               atol=1e-5)
    # by name, through the expression language
    e3 = en.parse("label=cat", w.attributes)
    np.testing.assert_allclose(float(e3(z[0])), float(label.energy(3)(z[0])), rtol=1e-6)


@pytest.mark.slow
def test_cifar10_world_renders_like_the_generator(converted, lace_vectors):
    """render(z) = G(z, c = 0, ψ) with noise 'const' (LACE's generate_images after g)."""
    from lace_jax import checkpoint
    from lace_jax.models import stylegan2 as sg

    cfg = load_config("cifar10")
    cfg["checkpoint_dir"] = str(converted / "cifar")
    w = worlds.world_from_config(cfg)
    z = jnp.asarray(lace_vectors["cifar_z"][:2])
    img = jax.jit(lambda r, z: r(z))(w.render, z)
    g_cfg, g_vars = checkpoint.load_generator(converted / "cifar" / "generator")
    ws = sg.mapping(g_cfg, g_vars, z, jnp.zeros((2, g_cfg.c_dim)))
    ref = sg.synthesis(g_cfg, g_vars, ws, noise_mode="const")
    assert img.shape == (2, 3, 32, 32)
    np.testing.assert_allclose(np.asarray(img), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_ffhq_world_from_converted_fixtures(converted, lace_vectors):
    cfg = load_config("ffhq")
    cfg["checkpoint_dir"] = str(converted / "ffhq")
    cfg["use_attributes"] = ["glasses", "yaw"]
    w = worlds.world_from_config(cfg)
    assert w.latent_dim == 64 and w.t_end == 1e-3 and w.truncation_psi == 0.7
    assert w.attributes["glasses"].kind == "discrete" and w.attributes["yaw"].kind == "continuous"
    z = jnp.asarray(lace_vectors["ffhq_z"])
    np.testing.assert_allclose(np.asarray(jax.vmap(w.mapping)(z)), lace_vectors["ffhq_w"], rtol=1e-5, atol=1e-5)
    cond = en.parse("glasses=1 & yaw=0.5", w.attributes)
    np.testing.assert_allclose(np.asarray(jax.vmap(cond)(z)), -lace_vectors["ffhq_cond_energy"], rtol=1e-5,
                               atol=1e-5)
    # a configured attribute whose classifier was not converted: the error names it
    cfg["use_attributes"] = ["glasses", "smile"]
    with pytest.raises(worlds.MissingCheckpointError, match="best_valid_ckpt_smile.pt"):
        worlds.world_from_config(cfg)


def test_shapes_world_from_the_shipped_model():
    """The default world: attributes with class names/ranges, render → judge round trip, z and w spaces differ."""
    w = worlds.world_from_config("shapes")
    assert w.name == "shapes" and w.latent_dim == 64 and w.mapping is not None
    assert w.config["classifier_space"] == "wz"
    assert type(w.attributes["shape"].fn).__name__ == "ProductOfExperts"
    assert type(w.attributes["size"].fn).__name__ == "LatentClassifier"
    assert w.attributes["shape"].classes == ("square", "circle", "triangle", "star")
    assert w.attributes["size"].value_range == (0.0, 1.0)
    z = jax.random.normal(jax.random.PRNGKey(0), (3, w.latent_dim))
    images = w.render(z)
    assert images.shape == (3, 3, 32, 32) and float(jnp.max(jnp.abs(images))) < 1.5
    out = w.judge(images)
    assert out["labels"]["shape"].shape == (3,) and out["features"].shape[0] == 3
    real = w.real_images(jax.random.PRNGKey(1), 2)
    assert real.shape == (2, 3, 32, 32)
    judged = w.judge(real)["labels"]
    wz = worlds.world_from_config({"world": "shapes", "classifier_space": "z"})
    assert wz.mapping is None
    e_w, e_z = (en.parse("shape=circle & size=0.5", x.attributes)(z[0]) for x in (w, wz))
    assert np.isfinite(float(e_w)) and np.isfinite(float(e_z)) and float(e_w) != float(e_z)
    assert set(judged) >= {"shape", "background", "size", "x", "y", "hue"}


def test_shapes_world_rejects_unknown_classifier_space():
    with pytest.raises(ValueError, match="classifier_space"):
        worlds.world_from_config({"world": "shapes", "classifier_space": "x"})


def test_shapes_world_missing_model_dir(tmp_path):
    with pytest.raises(worlds.MissingCheckpointError, match="model_card.json"):
        worlds.world_from_config({"world": "shapes", "model_dir": str(tmp_path / "nowhere")})


def _drift_networks(world):
    """Every MappingW and LatentClassifier inside the world's attribute functions and its mapping."""
    from lace_jax.models.classifiers import LatentClassifier, MappingW

    found = []

    def visit(x):
        if isinstance(x, (LatentClassifier, MappingW)):
            found.append(x)
            if isinstance(x, LatentClassifier) and x.g is not None:
                visit(x.g)
        elif isinstance(x, (tuple, list)):
            for y in x:
                visit(y)
        elif hasattr(x, "members"):
            visit(x.members)

    for a in world.attributes.values():
        visit(a.fn)
    visit(world.mapping)
    return found


def test_precision_reaches_every_drift_network_of_the_shapes_world():
    """`precision` reaches the mapping and every latent classifier of the default world (w and z classifiers, the
    products of experts)."""
    shapes = worlds.world_from_config({"world": "shapes", "precision": "bf16"})
    nets = _drift_networks(shapes)
    assert shapes.precision == "bf16" and shapes.config["precision"] == "bf16"
    assert len(nets) >= 7 and {n.precision for n in nets} == {"bf16"}
    assert {type(n).__name__ for n in nets} == {"LatentClassifier", "MappingW"}


def test_precision_flows_from_the_config_of_a_lace_world(converted):
    """CIFAR-10 world from the converted fixtures: `auto` is resolved (highest on CPU) into the world's config, bf16
    reaches the mapping and the classifier and changes the energy's gradient (not wildly), and a bad value is an
    error naming the choices (checked before any loading, for every world kind)."""
    cfg = load_config("cifar10")
    cfg["checkpoint_dir"] = str(converted / "cifar")
    assert cfg["precision"] == "auto"
    auto = worlds.world_from_config(cfg)
    if jax.default_backend() == "cpu":
        assert auto.precision == "highest" and auto.config["precision"] == "highest"
    bf = worlds.world_from_config({**cfg, "precision": "bf16"})
    assert {n.precision for n in _drift_networks(bf)} == {"bf16"} and len(_drift_networks(bf)) == 3
    z = jax.random.normal(jax.random.PRNGKey(0), (4, 64))
    g_hi, g_bf = (np.asarray(en.grad(en.stack([w.parse("label=cat")] * 4), z)) for w in (auto, bf))
    rel = np.abs(g_bf - g_hi).max() / np.abs(g_hi).max()
    assert 1e-5 < rel < 0.2, rel                # applied (bf16 differs), and not garbage
    for bad in ("fp8", "BF16", 3):
        with pytest.raises(ValueError, match="precision must be one of highest, tf32, bf16, auto"):
            worlds.world_from_config({**cfg, "precision": bad})
        with pytest.raises(ValueError, match="precision must be one of"):
            worlds.world_from_config({"world": "toy2d", "precision": bad})
