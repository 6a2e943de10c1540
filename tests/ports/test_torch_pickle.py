"""The restricted reader on the fixture files and on zip / legacy files written byte by byte (no torch)."""
import io

import numpy as np
import pytest

from ports import torch_pickle as tp
from tests.ports import pickle_builder as pb

LACE_FILES = [("dense_embedder_cifar.pt", "dense_embedder_cifar.npz"),
              ("best_valid_ckpt_glasses.pt", "dense_embedder_glasses.npz"),
              ("best_valid_ckpt_yaw.pt", "dense_embedder_yaw.npz")]


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _assert_same_state_dict(got, want):
    assert list(got) == list(want)  # same keys, same (torch) order
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


# -------------------------------------------------------------------------------------------------------------
# Fixture files.

def test_rosinality_checkpoint_pt(fixtures):
    d = tp.load(fixtures / "rosinality_small" / "checkpoint.pt")
    assert sorted(d) == ["g_ema", "latent_avg"]
    _assert_same_state_dict(d["g_ema"], _npz(fixtures / "rosinality_small" / "state_dict.npz"))
    vec = np.load(fixtures / "rosinality_small" / "vectors.npz")
    np.testing.assert_array_equal(d["latent_avg"], vec["truncation_latent"])
    assert d["g_ema"]["noises.noise_0"].shape == (1, 1, 4, 4)


@pytest.mark.parametrize("pt,npz", LACE_FILES)
def test_lace_pt_files(fixtures, pt, npz):
    d = tp.load(fixtures / "lace" / pt)
    assert sorted(d) == ["model_state_dict", "state_dict"]
    want = _npz(fixtures / "lace" / npz)
    _assert_same_state_dict(d["state_dict"], want)
    _assert_same_state_dict(d["model_state_dict"], {f"f.{k}": v for k, v in want.items()})
    assert isinstance(d["state_dict"], tp.collections.OrderedDict)
    assert d["state_dict"].__dict__["_metadata"][""] == {"version": 1}   # BUILD state kept as data


def test_file_object_and_bytes_give_the_same(fixtures):
    path = fixtures / "lace" / "dense_embedder_cifar.pt"
    a = tp.load(path)["state_dict"]
    with open(path, "rb") as f:
        b = tp.load(f)["state_dict"]
    c = tp.loads(path.read_bytes())["state_dict"]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])


def test_ada_network_pickle_records(fixtures):
    d = tp.load(fixtures / "ada_cifar_small" / "network-snapshot.pkl")
    assert list(d) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    g_ema = d["G_ema"]
    assert isinstance(g_ema, tp.PersistentObject)
    assert (g_ema.class_name, g_ema.module_name, g_ema.version, g_ema.has_source) == \
        ("Generator", "training.networks", 6, True)
    assert g_ema.init_kwargs == {"z_dim": 64, "w_dim": 64, "mapping_kwargs": {"num_layers": 2},
                                 "synthesis_kwargs": {"channel_base": 2048, "channel_max": 64, "num_fp16_res": 0,
                                                      "conv_clamp": 256},
                                 "c_dim": 10, "img_resolution": 32, "img_channels": 3}
    assert (d["D"].class_name, d["augment_pipe"].class_name) == ("Discriminator", "AugmentPipe")
    assert d["augment_pipe"].module_name == "training.augment"
    # the numpy scalar of fc0 (lr 0.01, 64 + 64 inputs): 0.01 / sqrt(128), as float64
    fc0 = g_ema.modules["mapping"].modules["fc0"]
    assert isinstance(fc0.state["weight_gain"], np.float64)
    np.testing.assert_allclose(fc0.state["weight_gain"], 0.01 / np.sqrt(128), rtol=1e-15)
    assert "module_src" not in fc0.state and not hasattr(fc0, "module_src")   # the source is not even kept


def test_ada_g_ema_exact_and_g_differs(fixtures):
    d = tp.load(fixtures / "ada_cifar_small" / "network-snapshot.pkl")
    want = _npz(fixtures / "ada_cifar_small" / "state_dict.npz")
    _assert_same_state_dict(d["G_ema"].state_dict(), want)
    g = d["G"].state_dict()
    assert list(g) == list(want)
    buffers = ("resample_filter", "noise_const", "w_avg")
    params = [k for k in want if not k.endswith(buffers)]
    assert len(params) == 58
    assert min(float(np.abs(g[k] - want[k]).max()) for k in params) > 1e-3   # every parameter moved
    delta = np.concatenate([(g[k] - want[k]).ravel() for k in params])
    np.testing.assert_allclose(delta.std(), 0.01, rtol=0.05)                # by 0.01·N(0,1), as documented


# -------------------------------------------------------------------------------------------------------------
# Zip and legacy layouts written by the test builder.

def _tensors():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((2, 3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5, 2)).astype(np.float16),
        "f64": rng.standard_normal(3),
        "i64": np.array([-(2 ** 40), 0, 7], np.int64),
        "i32": np.array([[1, -2]], np.int32),
        "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }


@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_dtypes_shapes_round_trip(writer):
    ts = _tensors()
    data = pb.torch_zip_bytes(ts, folder="any_folder_name") if writer == "zip" else pb.torch_legacy_bytes(ts)
    got = tp.loads(data)
    for k, v in ts.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v)
        assert got[k].flags.c_contiguous and got[k].flags.writeable


def test_bfloat16():
    import jax.numpy as jnp

    x = np.array([1.0, -2.5, 3.140625, 1e30], np.float32).astype(jnp.bfloat16)
    got = tp.loads(pb.torch_zip_bytes({"x": x}))["x"]
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), x.astype(np.float32))


@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_offset_stride_and_shared_storage(writer):
    base = np.arange(30, dtype=np.float32)
    st = pb.Storage(base)
    tree = {
        "transposed": pb.Tensor(st, (5, 6), (1, 5)),          # column-major view = (6, 5).T
        "offset": pb.Tensor(st, (2, 3), (3, 1), offset=10),
        "every_other": pb.Tensor(st, (4,), (2,), offset=1),
        "broadcast": pb.Tensor(st, (3, 2), (0, 1), offset=28),
        "param": pb.Param(pb.Tensor(st, (30,), (1,))),
    }
    data = pb.torch_zip_bytes(tree) if writer == "zip" else pb.torch_legacy_bytes(tree)
    got = tp.loads(data)
    np.testing.assert_array_equal(got["transposed"], base.reshape(6, 5).T)
    np.testing.assert_array_equal(got["offset"], base[10:16].reshape(2, 3))
    np.testing.assert_array_equal(got["every_other"], [1, 3, 5, 7])
    np.testing.assert_array_equal(got["broadcast"], [[28, 29]] * 3)
    np.testing.assert_array_equal(got["param"], base)
    got["param"][0] = -1   # tensors own their memory
    assert got["offset"][0, 0] == 10


def test_big_endian_zip_is_swapped():
    x = np.arange(4, dtype=np.float32) + 0.5
    np.testing.assert_array_equal(tp.loads(pb.torch_zip_bytes({"x": x}, byteorder="big"))["x"], x)


def test_torch_size_device_dtype_and_containers():
    tree = {"size": pb.Reduce(pb.Global("torch", "Size"), ((3, 4),)),
            "dev": pb.Reduce(pb.Global("torch", "device"), ("cpu",)),
            "dtype": pb.Global("torch", "float16"),
            "od": pb.Reduce(pb.ORDERED_DICT, ([("a", 1), ("b", [1.5, None, True])],)),
            "set": {1, 2}, "bytes": b"\x00\xff", "nested": {"t": (1, 2, 3, 4), "l": []}}
    got = tp.loads(pb.torch_zip_bytes(tree))
    assert got["size"] == (3, 4) and got["dev"] == "cpu" and got["dtype"] == np.float16
    assert list(got["od"].items()) == [("a", 1), ("b", [1.5, None, True])]
    assert got["set"] == {1, 2} and got["bytes"] == b"\x00\xff" and got["nested"] == {"t": (1, 2, 3, 4), "l": []}


def test_numpy_scalars_both_spellings_and_arrays():
    arr_node = pb.Build(pb.Reduce(pb.Global("numpy.core.multiarray", "_reconstruct"),
                                  (pb.Global("numpy", "ndarray"), (0,), b"b")),
                        (1, (2, 2), pb.Build(pb.Reduce(pb.Global("numpy", "dtype"), ("f4", False, True)),
                                             (3, "<", None, None, None, -1, -1, 0)),
                         False, np.arange(4, dtype="<f4").tobytes()))
    tree = {"new": pb.numpy_scalar(0.125), "old": pb.numpy_scalar(-3, "i8", module="numpy.core.multiarray"),
            "arr": arr_node}
    for proto in (2, 4):
        got = tp.loads(pb.Emitter(proto, "bytes").dumps(tree))
        assert isinstance(got["new"], np.float64) and got["new"] == 0.125
        assert isinstance(got["old"], np.int64) and got["old"] == -3
        np.testing.assert_array_equal(got["arr"], np.arange(4, dtype=np.float32).reshape(2, 2))


def test_persistent_object_state_dict_rules():
    """torch naming: params, then persistent buffers, then submodules; None entries and non-persistent buffers
    dropped."""
    sub_state = {"_parameters": {"weight": np.ones((2, 2), np.float32), "bias": None},
                 "_buffers": {"kept": np.zeros(1, np.float32), "scratch": np.zeros(3, np.float32)},
                 "_non_persistent_buffers_set": {"scratch"}, "_modules": {}}
    tree = pb.persistent("Outer", {"_parameters": {"a": np.full(2, 3.0, np.float32)}, "_buffers": {},
                                   "_modules": {"inner": pb.persistent("Inner", sub_state), "gone": None},
                                   "_init_kwargs": {"x": 1}})
    obj = tp.loads(pb.Emitter(4, "bytes").dumps(tree))
    assert list(obj.state_dict()) == ["a", "inner.weight", "inner.kept"]
    assert obj.init_kwargs == {"x": 1} and obj.module_name is None and obj.has_source
    assert list(obj.modules) == ["inner"] and obj.modules["inner"].class_name == "Inner"
    assert list(obj.modules["inner"].state_dict(prefix="p.")) == ["p.weight", "p.kept"]


def test_legacy_storage_views():
    """Legacy persistent ids with view metadata `(view_key, offset, size)`: tensors index into the view."""
    import struct

    base = np.arange(10, dtype=np.float32)
    pid = pb.PersId(("storage", pb.Global("torch", "FloatStorage"), "root", "cpu", 10, ("v", 2, 4)))
    rebuild = pb.Global("torch._utils", "_rebuild_tensor_v2")
    tree = {"t": pb.Reduce(rebuild, (pid, 1, (3,), (1,), False, pb.ordered_dict())),
            "whole": pb.Reduce(rebuild, (pb.PersId(("storage", pb.Global("torch", "FloatStorage"), "root", "cpu",
                                                    10, None)), 0, (2, 5), (5, 1), False, pb.ordered_dict()))}
    head = b"".join(pb.Emitter(2).dumps(x) for x in (pb.LEGACY_MAGIC, 1001, {"little_endian": True}))
    data = head + pb.Emitter(2).dumps(tree) + pb.Emitter(2).dumps(["root"]) + struct.pack("<q", 10) + base.tobytes()
    got = tp.loads(data)
    np.testing.assert_array_equal(got["t"], [3, 4, 5])
    np.testing.assert_array_equal(got["whole"], base.reshape(2, 5))
    bad = dict(tree, t=pb.Reduce(rebuild, (pid, 2, (3,), (1,), False, pb.ordered_dict())))   # runs past the view
    data = head + pb.Emitter(2).dumps(bad) + pb.Emitter(2).dumps(["root"]) + struct.pack("<q", 10) + base.tobytes()
    with pytest.raises(tp.CorruptFileError, match=r"reaches element 4 of a storage with 4 elements"):
        tp.loads(data)


def test_untyped_storage_v3_and_rebuild_from_type():
    """torch ≥ 2: `UntypedStorage` (bytes) + `_rebuild_tensor_v3(..., dtype)`, and `_rebuild_from_type_v2` for
    tensors carrying Python attributes."""
    x = np.array([[1.5, -2.0], [3.25, 4.0]], np.float32)
    raw = pb.Storage(x.reshape(-1).view(np.uint8))
    pid = pb.PersId(("storage", pb.Global("torch.storage", "UntypedStorage"), "0", "cpu", 16))
    v3 = (pid, 0, (2, 2), (2, 1), False, pb.ordered_dict(), pb.Global("torch", "float32"))
    tree = {"v3": pb.Reduce(pb.Global("torch._utils", "_rebuild_tensor_v3"), v3),
            "typed": pb.Reduce(pb.Global("torch._tensor", "_rebuild_from_type_v2"),
                               (pb.Global("torch._utils", "_rebuild_tensor_v3"), pb.Global("torch._tensor", "Tensor"),
                                v3, {"note": 1}))}
    em = pb.Emitter(2, "zip")
    pkl = em.dumps(tree)
    buf = io.BytesIO()
    with tp.zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("m/data.pkl", pkl)
        zf.writestr("m/data/0", raw.array.tobytes())
    got = tp.loads(buf.getvalue())
    for k in ("v3", "typed"):
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], x)


def test_rosinality_training_checkpoint_with_argparse_namespace(fixtures):
    """rosinality's train.py saves `args` (an argparse.Namespace, NEWOBJ + BUILD) beside the state dicts."""
    from ports import rosinality

    with np.load(fixtures / "rosinality_small" / "state_dict.npz") as z:
        sd = {k: z[k] for k in z.files}
    args = pb.Build(pb.NewObj(pb.Global("argparse", "Namespace")), {"size": 32, "lr": 0.002, "path": "lmdb"})
    tree = {"g": sd, "d": {"convs.0.0.weight": np.ones((4, 3, 1, 1), np.float32)}, "g_ema": sd,
            "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99)}]}, "args": args,
            "ada_aug_p": 0.0, "latent_avg": np.zeros(64, np.float32)}
    data = tp.loads(pb.torch_zip_bytes(tree))
    assert data["args"] == {"size": 32, "lr": 0.002, "path": "lmdb"}
    assert data["g_optim"]["param_groups"][0]["betas"] == (0.0, 0.99)
    _assert_same_state_dict(data["g_ema"], sd)
    cfg, _ = rosinality.params_from_state_dict(data["g_ema"], latent_avg=data["latent_avg"])
    assert cfg.img_resolution == 32
