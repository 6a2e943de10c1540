"""LACE DenseEmbedder `.pt` files (both layouts, both entries, with and without `f.`) → our classifier; logits match
LACE's (`lace/vectors.npz`, 1e-5) and survive convert → orbax → load bit for bit."""
import numpy as np
import pytest

from lace_jax import checkpoint
from lace_jax.models.classifiers import dense_embedder_apply
from ports import convert, lace_classifier
from tests.ports import pickle_builder as pb

TOL = dict(rtol=1e-5, atol=1e-5)
CASES = [  # file, layout, outputs, input key, logits key
    ("dense_embedder_cifar.pt", "cifar", 10, "cifar_w", "cifar_logits"),
    ("best_valid_ckpt_glasses.pt", "ffhq", 2, "ffhq_w", "ffhq_logits_glasses"),
    ("best_valid_ckpt_yaw.pt", "ffhq", 1, "ffhq_w", "ffhq_logits_yaw"),
]


def _logits(config, variables, w):
    out = dense_embedder_apply(config, variables, w)
    return np.asarray(out[0] if isinstance(out, tuple) else out)


@pytest.mark.parametrize("name,layout,n_out,x_key,y_key", CASES)
def test_pt_reproduces_lace_logits(fixtures, lace_vectors, name, layout, n_out, x_key, y_key):
    loaded = lace_classifier.load(fixtures / "lace" / name)
    assert (loaded.layout, loaded.num_outputs, loaded.entry) == (layout, n_out, "state_dict")
    assert tuple(loaded.config["dims"]) == (64, 53, 42, 32)
    np.testing.assert_allclose(_logits(loaded.config, loaded.params, lace_vectors[x_key]), lace_vectors[y_key], **TOL)


def test_other_entries_and_prefixes_give_the_same_params(fixtures, tmp_path):
    ref = lace_classifier.load(fixtures / "lace" / "best_valid_ckpt_glasses.pt")
    with np.load(fixtures / "lace" / "dense_embedder_glasses.npz") as z:
        sd = {k: z[k] for k in z.files}
    variants = {
        "model_state_dict.pt": {"model_state_dict": {f"f.{k}": v for k, v in sd.items()}},
        "bare_prefixed.pt": {f"f.{k}": v for k, v in sd.items()},
        "bare.pt": dict(sd),
    }
    for fname, tree in variants.items():
        (tmp_path / fname).write_bytes(pb.torch_zip_bytes(tree, folder=fname.split(".")[0]))
    got = {f: lace_classifier.load(tmp_path / f) for f in variants}
    got["npz"] = lace_classifier.load(fixtures / "lace" / "dense_embedder_glasses.npz")
    assert got["model_state_dict.pt"].entry == "model_state_dict" and got["bare.pt"].entry == "<root>"
    for g in got.values():
        assert g.config == ref.config
        for layer in ref.params["params"]:
            for leaf in ref.params["params"][layer]:
                np.testing.assert_array_equal(g.params["params"][layer][leaf], ref.params["params"][layer][leaf])


def test_errors(fixtures, tmp_path):
    with np.load(fixtures / "lace" / "dense_embedder_cifar.npz") as z:
        sd = {k: z[k] for k in z.files}
    other = dict(sd, **{"linear.bias": sd["linear.bias"] + 1})
    (tmp_path / "disagree.pt").write_bytes(pb.torch_zip_bytes(
        {"state_dict": sd, "model_state_dict": {f"f.{k}": v for k, v in other.items()}}))
    with pytest.raises(ValueError, match=r"'state_dict' and 'model_state_dict' disagree on 'linear.bias'"):
        lace_classifier.load(tmp_path / "disagree.pt")
    with pytest.raises(ValueError, match=r"not a LACE DenseEmbedder|no 'state_dict'"):
        lace_classifier.load(fixtures / "rosinality_small" / "checkpoint.pt")
    bad = dict(sd, **{"net.3.weight": sd["net.3.weight"][:, :50]})
    (tmp_path / "shape.pt").write_bytes(pb.torch_zip_bytes({"state_dict": bad}))
    with pytest.raises(ValueError, match=r"net\.3\.weight"):
        lace_classifier.load(tmp_path / "shape.pt")


@pytest.mark.parametrize("name,layout,n_out,x_key,y_key", CASES)
def test_convert_round_trip_bit_for_bit(fixtures, lace_vectors, tmp_path, name, layout, n_out, x_key, y_key):
    src = fixtures / "lace" / name
    assert convert.detect_kind(src) == "lace"
    summary = convert.convert(src, tmp_path / "clf")
    assert (summary["layout"], summary["classes"]) == (layout, n_out)
    cfg, v = checkpoint.load_classifier(tmp_path / "clf")
    direct = lace_classifier.load(src)
    x = lace_vectors[x_key]
    np.testing.assert_array_equal(_logits(cfg, v, x), _logits(direct.config, direct.params, x))
    assert summary["parameter_count"] == sum(a.size for layer in v["params"].values() for a in layer.values())


def test_cli_prints_layout_and_classes(fixtures, tmp_path, capsys):
    code = convert.main(["--in", str(fixtures / "lace" / "dense_embedder_cifar.pt"), "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 0 and "LACE classifier, layout cifar (10 outputs" in out and "7,419 parameters" in out
