"""FID Inception weights → Flax variables → checkpoint, without torch: the recipe rebuilt bit for bit, full-size
legacy (`torch.save(..., _use_new_zipfile_serialization=False)`, as the 2019 file most likely is) and zip files
written here byte by byte, `python -m ports.convert` on them, and broken or hostile variants refused with clear
errors."""
import dataclasses
import hashlib
import json
import random
import struct
from collections import OrderedDict

import jax
import numpy as np
import pytest

from lace_jax import checkpoint
from lace_jax.metrics import fid
from ports import convert, inception, torch_pickle
from tests.ports import pickle_builder as pb
from tests.fid_helpers import recipe_state_dict

BATCH = 4   # as in tests/metrics/test_fid.py: the compiled network is shared


def recipe(fixtures) -> dict:
    return json.loads((fixtures / "fid_inception" / "recipe.json").read_text())




@pytest.fixture(scope="module")
def state_dict(fixtures):
    return recipe_state_dict(fixtures)


@pytest.fixture(scope="module")
def variables(state_dict):
    return inception.convert(state_dict)


def _same_tree(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# -------------------------------------------------------------------------------------------------------------
# A legacy torch.save writer (torch's layout: README §6 of the fixture and its legacy_layout_head.pth).

@dataclasses.dataclass(frozen=True, eq=False)
class _FilledReduce:
    """`func(*args)` followed by SETITEMS — how pickle writes an OrderedDict with its items."""
    func: pb.Global
    args: tuple
    items: dict


class _Emitter(pb.Emitter):
    def emit(self, x) -> None:
        if isinstance(x, _FilledReduce):
            super().emit(pb.Reduce(x.func, x.args))
            if x.items:
                self.w(b"(")
                for k, v in x.items.items():
                    self.emit(k)
                    self.emit(v)
                self.w(b"u")
        else:
            super().emit(x)


def _ordered(items: dict) -> _FilledReduce:
    return _FilledReduce(pb.ORDERED_DICT, (), items)


def write_legacy(path, sd: dict, metadata: dict | None) -> None:
    """`torch.save(sd, path, _use_new_zipfile_serialization=False)`: magic, protocol 1001, sys info, the
    OrderedDict (tensors as persistent storage ids, then BUILD with `_metadata`), the sorted storage keys, and per
    key an int64 element count followed by the raw bytes. Storage keys are numbered like the fixture's."""
    tensors = {k: pb.Tensor.of(v, key=str(94000000000000 + 256 * i)) for i, (k, v) in enumerate(sd.items())}
    main: object = _ordered(tensors)
    if metadata is not None:
        main = pb.Build(main, {"_metadata": _ordered({m: {"version": v["version"]} for m, v in metadata.items()})})
    em = _Emitter(2, "legacy")
    body = em.dumps(main)
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    keys = sorted(em.storages)
    with open(path, "wb") as f:
        for head in (pb.LEGACY_MAGIC, 1001, sys_info):
            f.write(pb.Emitter(2).dumps(head))
        f.write(body)
        f.write(pb.Emitter(2).dumps(keys))
        for key in keys:
            arr = em.storages[key].array
            f.write(struct.pack("<q", arr.size))
            f.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes())


@pytest.fixture(scope="module")
def legacy_file(tmp_path_factory, fixtures, state_dict):
    path = tmp_path_factory.mktemp("inception") / inception.WEIGHTS_FILE
    write_legacy(path, state_dict, recipe(fixtures)["state_dict_metadata"])
    return path


# -------------------------------------------------------------------------------------------------------------

def test_recipe_rebuilt_bit_for_bit(fixtures, state_dict):
    r = recipe(fixtures)
    h = hashlib.sha256()
    for e in r["keys"]:
        h.update(np.ascontiguousarray(state_dict[e["key"]]).tobytes())     # native order is little-endian here
    assert h.hexdigest() == r["sha256_all"] and len(state_dict) == r["num_keys"] == 566


def test_writer_matches_the_fixture_layout(fixtures, state_dict, tmp_path):
    """Our writer and torch's file (first 5 keys) read back to the same state dict and `_metadata`."""
    head = fixtures / "fid_inception" / "legacy_layout_head.pth"
    theirs = torch_pickle.load(head)
    keys = list(theirs)
    assert keys == list(state_dict)[:5]
    meta = {m: {"version": v["version"]} for m, v in theirs.__dict__["_metadata"].items()}
    write_legacy(tmp_path / "head.pth", {k: state_dict[k] for k in keys}, meta)
    ours = torch_pickle.load(tmp_path / "head.pth")
    assert list(ours) == keys and ours.__dict__["_metadata"] == theirs.__dict__["_metadata"]
    for k in keys:
        np.testing.assert_array_equal(ours[k], theirs[k])
        np.testing.assert_array_equal(ours[k], state_dict[k])
    ours_b, theirs_b = (tmp_path / "head.pth").read_bytes(), head.read_bytes()
    assert ours_b[:21] == theirs_b[:21]                     # magic and protocol pickles byte for byte
    assert ours_b[-4008:] == theirs_b[-4008:]               # the data records (README §6: bytes 998-5005) too
    assert convert.detect_kind(head) == "inception"
    with pytest.raises(inception.InceptionWeightsError, match=r"465 of 470 FID Inception tensors are missing: "
                                                              r"'Conv2d_2a_3x3\.conv\.weight' \[32, 32, 3, 3\]"):
        inception.load(head)


def test_full_legacy_file_through_the_cli(legacy_file, variables, fixtures, tmp_path, capsys):
    # torch's file is 95,646,604 bytes, 95,546,848 of them the data records; our main pickle has no memo opcodes
    assert 95_546_848 < legacy_file.stat().st_size < 95_646_604 + 50_000
    assert convert.detect_kind(legacy_file) == "inception"
    code = convert.main(["--in", str(legacy_file), "--out", str(tmp_path / "ckpt")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "FID Inception (pytorch-fid pool3, 2048 features); skipped fc.weight, fc.bias" in out
    assert "does NOT match the name's hash prefix 6726825d" in out          # the recipe's weights are not the real ones
    assert "21,785,568 parameters" in out           # kernels + BN scale/bias; running stats are not parameters
    meta = checkpoint.read_meta(tmp_path / "ckpt")
    assert meta["kind"] == "inception" and meta["variable_count"] == 21_820_000
    assert meta["extra"]["sha256"] == inception.file_sha256(legacy_file)
    loaded = fid.load_inception(tmp_path / "ckpt")
    _same_tree(loaded, variables)
    kind, _, plain = checkpoint.load(tmp_path / "ckpt")                     # no model needed to restore
    assert kind == "inception"
    _same_tree(plain, variables)
    vec = np.load(fixtures / "fid_inception" / "vectors.npz")
    f = fid.inception_features(plain, vec["s299_images_uint8"], batch_size=BATCH)
    np.testing.assert_allclose(f, vec["s299_pool3"], rtol=0, atol=1e-4)


def test_zip_file_shuffled_without_counters_or_fc(state_dict, variables, tmp_path):
    keys = [k for k in state_dict if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
    random.Random(0).shuffle(keys)
    path = tmp_path / "inception_zip.pth"
    path.write_bytes(pb.torch_zip_bytes(OrderedDict((k, state_dict[k]) for k in keys)))
    assert convert.detect_kind(path) == "inception"
    _same_tree(inception.load(path), variables)


def test_wrapper_names_and_npz(state_dict, variables, tmp_path):
    prefix = {v: k for k, v in inception._WRAPPER_PREFIX.items()}
    wrapped = {}
    for k, v in state_dict.items():
        head, rest = k.split(".", 1)
        wrapped[f"{prefix[head]}.{rest}" if head in prefix else k] = v
    assert "blocks.3.2.branch_pool.conv.weight" in wrapped
    _same_tree(inception.convert(wrapped), variables)
    np.savez(tmp_path / "sd.npz", **state_dict)
    assert convert.detect_kind(tmp_path / "sd.npz") == "inception"
    _same_tree(inception.load(tmp_path / "sd.npz"), variables)


@pytest.mark.parametrize("case,match", [
    ("missing", r"1 of 470 FID Inception tensors are missing: 'Mixed_6e\.branch7x7_2\.conv\.weight' "
                r"\[192, 192, 1, 7\]"),
    ("shape", r"'Mixed_6e\.branch7x7_2\.conv\.weight' has shape \[192, 192, 7, 1\], expected \[192, 192, 1, 7\]"),
    ("dtype", r"'Conv2d_1a_3x3\.bn\.weight' has dtype int64, expected a float tensor"),
    ("nan", r"'Mixed_7c\.branch_pool\.bn\.running_mean' holds non-finite values"),
    ("negative_var", r"'Mixed_5b\.branch1x1\.bn\.running_var' has negative variances"),
    ("unexpected", r"unexpected keys \['AuxLogits\.conv0\.conv\.weight'\]"),
    ("not_tensor", r"'Conv2d_1a_3x3\.conv\.weight' is a str, expected a tensor"),
    ("duplicate", r"key 'Conv2d_1a_3x3\.conv\.weight' appears twice"),
])
def test_bad_state_dicts(state_dict, case, match):
    sd = dict(state_dict)
    if case == "missing":
        del sd["Mixed_6e.branch7x7_2.conv.weight"]
    elif case == "shape":
        sd["Mixed_6e.branch7x7_2.conv.weight"] = sd["Mixed_6e.branch7x7_2.conv.weight"].transpose(0, 1, 3, 2)
    elif case == "dtype":
        sd["Conv2d_1a_3x3.bn.weight"] = np.ones(32, np.int64)
    elif case == "nan":
        sd["Mixed_7c.branch_pool.bn.running_mean"] = sd["Mixed_7c.branch_pool.bn.running_mean"] * np.nan
    elif case == "negative_var":
        sd["Mixed_5b.branch1x1.bn.running_var"] = -sd["Mixed_5b.branch1x1.bn.running_var"]
    elif case == "unexpected":
        sd["AuxLogits.conv0.conv.weight"] = np.zeros((128, 768, 1, 1), np.float32)
    elif case == "not_tensor":
        sd["Conv2d_1a_3x3.conv.weight"] = "weights"
    elif case == "duplicate":
        sd["blocks.0.0.conv.weight"] = sd["Conv2d_1a_3x3.conv.weight"]
    with pytest.raises(inception.InceptionWeightsError, match=match):
        inception.convert(sd)
    with pytest.raises(ValueError):
        inception.convert([1, 2, 3])


@pytest.mark.parametrize("case", ["hostile", "truncated", "head_only", "wrong_kind", "shapes"])
def test_cli_refuses_bad_files(legacy_file, state_dict, fixtures, tmp_path, capsys, case):
    pwned = tmp_path / "pwned"
    src = tmp_path / "in.pth"
    kind = []
    if case == "hostile":       # a refused global where a tensor should be, in a file that looks like the weights
        sd = {k: state_dict[k] for k in list(state_dict)[:6]}
        sd["Conv2d_1a_3x3.bn.bias"] = pb.Reduce(pb.Global("os", "system"), (f"touch {pwned}",))
        src.write_bytes(pb.torch_legacy_bytes(sd))
    elif case == "truncated":
        data = legacy_file.read_bytes()
        src.write_bytes(data[: len(data) // 2])
    elif case == "head_only":
        src = fixtures / "fid_inception" / "legacy_layout_head.pth"
    elif case == "wrong_kind":
        src = fixtures / "rosinality_small" / "checkpoint.pt"
        kind = ["--kind", "inception"]
    elif case == "shapes":
        sd = dict(state_dict)
        sd["Mixed_7b.branch3x3_2a.conv.weight"] = np.zeros((384, 384, 3, 1), np.float32)
        np.savez(tmp_path / "in.npz", **sd)
        src = tmp_path / "in.npz"
    code = convert.main(["--in", str(src), "--out", str(tmp_path / "out"), *kind])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("convert: error: ") and err.count("\n") == 1, err
    expect = {"hostile": "refusing global os.system", "truncated": "truncated",
              "head_only": "465 of 470 FID Inception tensors are missing",
              "wrong_kind": "cannot convert as inception", "shapes": "'Mixed_7b.branch3x3_2a.conv.weight' has shape "
              "[384, 384, 3, 1], expected [384, 384, 1, 3]"}[case]
    assert expect in err, err
    assert not pwned.exists() and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
