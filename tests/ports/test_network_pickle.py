"""stylegan2-ada network pickles: the fixture snapshot and one we write ourselves with the upstream layout, read by
the restricted reader and converted through `ports.stylegan2_ada` (G_ema, never G) to the upstream vectors."""
import json
import jax
import numpy as np
import pytest

from lace_jax.models import stylegan2 as S
from ports import stylegan2_ada
from ports import torch_pickle as tp
from tests.ports import pickle_builder as pb

TOL = dict(rtol=1e-5, atol=1e-5)
_SYNTH = jax.jit(S.synthesis, static_argnums=(0,), static_argnames=("noise_mode",))  # one compile per config


@pytest.fixture(scope="module")
def ada(fixtures):
    d = fixtures / "ada_cifar_small"
    with np.load(d / "state_dict.npz") as z:
        sd = {k: z[k] for k in z.files}
    kwargs = json.loads((d / "config.json").read_text())["constructor_kwargs"]
    return sd, kwargs, dict(np.load(d / "vectors.npz")), d


@pytest.fixture(scope="module")
def built(ada, tmp_path_factory):
    """Our own snapshot: G_ema = fixture weights, G = the same + 0.02·N(0,1) on every parameter."""
    sd, kwargs, _, _ = ada
    rng = np.random.default_rng(11)
    g = {k: (v + 0.02 * rng.standard_normal(v.shape).astype(np.float32)
             if not k.endswith(("resample_filter", "noise_const", "w_avg")) else v) for k, v in sd.items()}
    path = tmp_path_factory.mktemp("pkl") / "network-snapshot-000000.pkl"
    path.write_bytes(pb.network_pickle_bytes(sd, g, kwargs))
    return path, g


def _images(loaded, vec):
    cfg, v = loaded.config, loaded.variables
    ws = S.mapping(cfg, v, vec["z"], vec["c"], truncation_psi=0.7)
    return np.asarray(ws), np.asarray(_SYNTH(cfg, v, ws, noise_mode="const"))


def test_builder_layout_matches_the_fixture(ada, built):
    """Same set of globals as the real snapshot (which was compared with torch's own output opcode by opcode)."""
    _, _, _, d = ada
    path, _ = built
    assert pb.globals_used(path.read_bytes()) == pb.globals_used((d / "network-snapshot.pkl").read_bytes())


def test_built_pickle_reads_back(ada, built):
    sd, kwargs, _, _ = ada
    path, g = built
    data = tp.load(path)
    assert list(data) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    got = data["G_ema"].state_dict()
    assert list(got) == list(sd)
    for k in sd:
        np.testing.assert_array_equal(got[k], sd[k], err_msg=k)
    for k, v in data["G"].state_dict().items():
        np.testing.assert_array_equal(v, g[k], err_msg=k)
    assert data["G_ema"].init_kwargs == kwargs and data["G_ema"].has_source
    assert data["D"].class_name == "Discriminator" and data["augment_pipe"].class_name == "AugmentPipe"


@pytest.mark.parametrize("which", ["fixture", "built"])
def test_vectors_from_pickle(ada, built, which):
    _, _, vec, d = ada
    path = d / "network-snapshot.pkl" if which == "fixture" else built[0]
    loaded = stylegan2_ada.load(path)
    assert loaded.skipped == ("D", "G", "augment_pipe", "training_set_kwargs")
    ws, img = _images(loaded, vec)
    np.testing.assert_allclose(ws, vec["ws_psi07"], **TOL)
    np.testing.assert_allclose(img, vec["img_const_psi07"], **TOL)


def test_taking_g_instead_of_g_ema_fails_the_vectors(ada, built):
    """The check above can fail: the same pipeline on `G` misses the vectors by far more than the tolerance."""
    sd, kwargs, vec, _ = ada
    _, g = built
    cfg, v = stylegan2_ada.params_from_state_dict(g, kwargs)
    _, img = _images(stylegan2_ada.Loaded(cfg, v, (), "G"), vec)
    assert np.abs(img - vec["img_const_psi07"]).max() > 1e-2
