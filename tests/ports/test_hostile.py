"""Hostile and broken inputs: each gives a clear `TorchFileError` and runs nothing.

Every payload that reaches for code would, if executed, create `tmp_path / 'pwned'`; each test checks that the file
does not exist afterwards. `test_payloads_are_live` proves the payloads are real: the standard `pickle` module
(which we never use for reading) does create the file from the same bytes.
"""
import pickle
import struct
import io
import sys
import zipfile

import numpy as np
import pytest

from ports import torch_pickle as tp
from tests.ports import pickle_builder as pb
from tests.ports.pickle_builder import Global, Reduce


def _touch_code(p) -> str:
    return f"open({str(p)!r}, 'w').write('pwned')"


def _payloads(p):
    """name → (tree, global the error must name)."""
    code = _touch_code(p)
    py = sys.executable
    return {
        "os.system": (Reduce(Global("os", "system"), (f"touch {p}",)), "os.system"),
        "posix.system": (Reduce(Global("posix", "system"), (f"touch {p}",)), "posix.system"),
        "builtins.eval": (Reduce(Global("builtins", "eval"), (code,)), "builtins.eval"),
        "builtins.exec": (Reduce(Global("builtins", "exec"), (code,)), "builtins.exec"),
        "subprocess": (Reduce(Global("subprocess", "call"), ([py, "-c", code],)), "subprocess.call"),
        "importlib": (Reduce(Reduce(Global("builtins", "getattr"),
                                    (Reduce(Global("importlib", "import_module"), ("os",)), "system")),
                             (f"touch {p}",)), "builtins.getattr"),
        "unknown module": (Reduce(Global("evil_plugin_xyz", "run"), (code,)), "evil_plugin_xyz.run"),
        "dunder import": (Reduce(Global("builtins", "__import__"), ("os",)), "builtins.__import__"),
        "torch.load inside": (Reduce(Global("torch", "load"), ("x.pt",)), "torch.load"),
    }


@pytest.mark.parametrize("name", list(_payloads("x")))
@pytest.mark.parametrize("where", ["top", "in_state_dict", "in_persistent_state", "in_storage_stream"])
def test_refused_globals(tmp_path, name, where):
    target = tmp_path / "pwned"
    tree, qualname = _payloads(target)[name]
    if where == "top":
        data = pb.Emitter(2).dumps(tree)
    elif where == "in_state_dict":
        data = pb.torch_zip_bytes({"w": np.ones(3, np.float32), "evil": tree})
    elif where == "in_persistent_state":
        data = pb.Emitter(4, "bytes").dumps({"G_ema": pb.persistent("Generator", {"_parameters": {}, "x": tree})})
    else:   # the payload as the main pickle of the legacy stream handed to torch.storage._load_from_bytes
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
        stream = b"".join(pb.Emitter(2).dumps(x) for x in (pb.LEGACY_MAGIC, 1001, sys_info, tree, []))
        data = pb.Emitter(4).dumps({"t": Reduce(Global("torch.storage", "_load_from_bytes"), (stream,))})
    with pytest.raises(tp.UnsafePickleError, match=rf"refusing global {qualname.replace('.', '[.]')} at byte offset "
                                                   rf"\d+"):
        tp.loads(data)
    assert not target.exists()


def test_error_names_the_offset_exactly(tmp_path):
    data = pb.Emitter(2).dumps([1, Reduce(Global("os", "system"), ("true",))])
    offset = data.index(b"cos\nsystem\n")
    with pytest.raises(tp.UnsafePickleError, match=f"refusing global os.system at byte offset {offset} of <bytes>:"):
        tp.loads(data)


def test_payloads_are_live(tmp_path):
    """Control: the standard unpickler runs these very bytes (so the refusals above are real refusals)."""
    target = tmp_path / "pwned"
    data = pb.Emitter(2).dumps(_payloads(target)["builtins.exec"][0])
    with pytest.raises(tp.UnsafePickleError):
        tp.loads(data)
    assert not target.exists()
    pickle.loads(data)  # noqa: S301 - deliberately, on our own payload, to prove it is live
    assert target.read_text() == "pwned"


@pytest.mark.parametrize("raw,match", [
    (b"\x80\x02cos\nsystem\n)R.", r"os\.system"),                                # GLOBAL + REDUCE
    (b"\x80\x02(X\x04\x00\x00\x00trueios\nsystem\n.", r"os\.system"),           # INST
    (b"\x80\x02(cos\nsystem\nX\x04\x00\x00\x00trueo.", r"os\.system"),          # OBJ
    (b"\x80\x04\x8c\x02os\x8c\x06system\x93.", r"os\.system"),                  # STACK_GLOBAL alone
    (b"\x80\x02\x82\x01.", r"extension-registry global \(EXT code 1\)"),      # copyreg extension codes
    (b"\x80\x02cnumpy\nndarray\n)R.", r"refusing to call numpy\.ndarray"),      # allowed name, not callable
    (b"\x80\x02cnumpy\nndarray\n)\x81.", r"refusing to instantiate numpy\.ndarray"),
    (b"\x80\x02K\x01)R.", r"refusing to call an object of type int"),
    (b"\x80\x02}K\x01b.", r"refusing BUILD|state int for a dict"),
    (b"\x80\x02]}b.", r"refusing BUILD \(__setstate__\) on list"),
    (b"\x80\x02K\x05}s.", r"stack underflow|refusing SETITEM"),
    (b"\x80\x02X\x01\x00\x00\x00xQ.", r"refusing persistent id 'x': this stream has no storage table"),
    (b"\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81.", r"torch\.save\(model\)"),
    (b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81.", r"TensorFlow-era"),
    (b"\x80\x02ccopyreg\n_reconstructor\n.", r"copyreg\._reconstructor"),
    (b"\x80\x02cnumpy\ndtype\nX\x01\x00\x00\x00O\x89\x88\x87R.", r"object dtype"),
])
def test_tricks(raw, match):
    with pytest.raises(tp.TorchFileError, match=match):
        tp.loads(raw)


def test_persistent_source_is_never_run(tmp_path, fixtures):
    """A persistent class whose embedded module source would create a file: read as data, source never run."""
    target = tmp_path / "pwned"
    src = f"import os\n{_touch_code(target)}\nos.system('touch {target}')\n"
    with np.load(fixtures / "ada_cifar_small" / "state_dict.npz") as z:
        sd = {k: z[k] for k in z.files}
    data = pb.network_pickle_bytes(sd, sd, {"z_dim": 64}, module_src=src)
    assert src.encode() in data
    obj = tp.loads(data)
    assert obj["G_ema"].has_source and not target.exists()
    assert src not in repr(obj["G_ema"]) and "module_src" not in obj["G_ema"].state


# -------------------------------------------------------------------------------------------------------------
# Broken files.

def test_truncated_network_pickle(fixtures):
    data = (fixtures / "ada_cifar_small" / "network-snapshot.pkl").read_bytes()
    for cut in (1, 2, 200, 1163 + 100, len(data) // 2, len(data) - 1):
        with pytest.raises(tp.TruncatedFileError, match=r"truncated"):
            tp.loads(data[:cut])


def test_truncated_zip(fixtures):
    data = (fixtures / "rosinality_small" / "checkpoint.pt").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        with pytest.raises(tp.TruncatedFileError, match=r"truncated|unreadable"):
            tp.loads(data[:cut], name="cut.pt")


def test_truncated_legacy():
    data = pb.torch_legacy_bytes({"w": np.arange(100, dtype=np.float32)})
    with pytest.raises(tp.TruncatedFileError, match=r"storage '0' needs 400 bytes"):
        tp.loads(data[:-1])
    with pytest.raises(tp.TruncatedFileError, match=r"before the size of storage '0'"):
        tp.loads(pb.torch_legacy_bytes({"w": np.arange(4, dtype=np.float32)}, drop_storage_data="0"))
    with pytest.raises(tp.MissingStorageError, match=r"storages \['0'\] are declared but absent"):
        tp.loads(pb.torch_legacy_bytes({"w": np.arange(4, dtype=np.float32)}, omit_key="0"))
    with pytest.raises(tp.CorruptFileError, match=r"holds 5 elements, the pickle declared 4"):
        tp.loads(pb.torch_legacy_bytes({"w": np.arange(4, dtype=np.float32)}, count_delta=1))


def test_zip_with_missing_storage():
    tree = {"a": np.ones(3, np.float32), "b": np.zeros((2, 2), np.float32)}
    with pytest.raises(tp.MissingStorageError, match=r"storage '1' \(4 x float32\) is missing .* 'archive/data/1'"):
        tp.loads(pb.torch_zip_bytes(tree, drop_storage="1"), name="ckpt.pt")


def test_zip_short_storage_and_layout():
    buf = io.BytesIO()
    good = pb.torch_zip_bytes({"a": np.ones(8, np.float32)})
    with zipfile.ZipFile(io.BytesIO(good)) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            payload = src.read(info)
            dst.writestr(info.filename, payload[:20] if info.filename.endswith("data/0") else payload)
    with pytest.raises(tp.TruncatedFileError, match=r"storage '0' in .* has 20 bytes, 8 x float32 need 32"):
        tp.loads(buf.getvalue())
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a/data.pkl", b"\x80\x02N.")
        z.writestr("b/data.pkl", b"\x80\x02N.")
    with pytest.raises(tp.CorruptFileError, match=r"exactly one '<folder>/data.pkl'"):
        tp.loads(two.getvalue())


@pytest.mark.parametrize("size,stride,offset", [((3, 4), (4, 1), 0), ((2, 2), (1, 2), 9), ((11,), (1,), 0),
                                                ((2,), (-1,), 1)])
def test_tensor_outside_its_storage(size, stride, offset):
    st = pb.Storage(np.arange(10, dtype=np.float32))
    with pytest.raises(tp.CorruptFileError, match=r"storage with 10 elements|non-negative integers"):
        tp.loads(pb.torch_zip_bytes({"t": pb.Tensor(st, size, stride, offset)}))


def test_bad_magic_and_protocol():
    with pytest.raises(tp.BadMagicError, match=r"bad magic number 12345"):
        tp.loads(pb.torch_legacy_bytes({"w": np.ones(2, np.float32)}, magic=12345))
    with pytest.raises(tp.BadMagicError, match=r"protocol version 1000"):
        tp.loads(pb.torch_legacy_bytes({"w": np.ones(2, np.float32)}, protocol_version=1000))


def test_not_a_torch_file(tmp_path):
    for data, err in [(b"", tp.TruncatedFileError), (b"\x00\x01garbage", tp.CorruptFileError),
                      (b"hello world\n", tp.CorruptFileError), (struct.pack("<d", 1.0) * 4, tp.CorruptFileError)]:
        with pytest.raises(err):
            tp.loads(data)


def test_wrong_shapes_reach_the_converters(fixtures):
    """A well-formed file with wrong tensor shapes: the reader returns it, the converter names key and shapes."""
    from ports import stylegan2_ada

    with np.load(fixtures / "ada_cifar_small" / "state_dict.npz") as z:
        sd = {k: z[k] for k in z.files}
    sd["mapping.fc1.weight"] = sd["mapping.fc1.weight"][:, :32]
    kwargs = {"z_dim": 64, "c_dim": 10, "w_dim": 64, "img_resolution": 32, "img_channels": 3,
              "mapping_kwargs": {"num_layers": 2},
              "synthesis_kwargs": {"channel_base": 2048, "channel_max": 64, "num_fp16_res": 0, "conv_clamp": 256}}
    data = pb.network_pickle_bytes(sd, sd, kwargs)
    g = tp.loads(data)["G_ema"]
    with pytest.raises(ValueError, match=r"mapping\.fc1\.weight.*\(64, 32\)"):
        stylegan2_ada.params_from_state_dict(g.state_dict(), g.init_kwargs)
