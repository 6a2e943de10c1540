"""Test helper: write PyTorch-world files byte by byte, without torch.

A tiny pickle emitter over a tree of plain values and marker nodes (`Global`, `Reduce`, `NewObj`, `Build`,
`PersId`, `Raw`, `Tensor`, `Param`, `Storage`), and on top of it:
* `torch_zip_bytes(tree)`   — a `torch.save` zip checkpoint (`<folder>/data.pkl` + `<folder>/data/<key>`);
* `torch_legacy_bytes(tree)` — the legacy stream (magic, protocol 1001, sys-info, pickle, keys, raw storages);
* `network_pickle_bytes(...)` — a stylegan2-ada network pickle laid out as `training_loop.py` writes snapshots:
  `{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe'}`, every network a persistent-class reconstructor
  call (`torch_utils.persistence._reconstruct_persistent_obj(meta)`), tensors as `torch._utils` rebuild calls over
  storages pickled as `torch.storage._load_from_bytes(<legacy stream of one storage>)`.

Only the byte layout is reproduced (learned from the fixture's opcode stream and upstream's persistence.py); no
code from upstream is used or embedded.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
from typing import Any, Mapping

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
PLACEHOLDER_SRC = "# placeholder: module source text is not included in this test pickle\n"


# --------------------------------------------------------------------------------------------------------------
# Marker nodes.

@dataclasses.dataclass(frozen=True)
class Global:
    module: str
    name: str


@dataclasses.dataclass(frozen=True, eq=False)
class Reduce:
    func: Any
    args: tuple


@dataclasses.dataclass(frozen=True, eq=False)
class NewObj:
    cls: Any
    args: tuple = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Build:
    obj: Any
    state: Any


@dataclasses.dataclass(frozen=True, eq=False)
class FilledNewObj:
    """`cls.__new__(cls)` (NEWOBJ) followed by SETITEMS: how pickle writes a dict subclass such as EasyDict."""
    cls: Any
    items: dict


@dataclasses.dataclass(frozen=True, eq=False)
class PersId:
    pid: Any


@dataclasses.dataclass(frozen=True, eq=False)
class Raw:
    """Opcode bytes emitted verbatim (for hostile inputs)."""
    data: bytes


@dataclasses.dataclass(eq=False)
class Storage:
    """A flat storage; several tensors may share one."""
    array: np.ndarray
    key: str | None = None


@dataclasses.dataclass(eq=False)
class Tensor:
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    storage: Storage
    size: tuple
    stride: tuple
    offset: int = 0

    @staticmethod
    def of(arr: np.ndarray, key: str | None = None) -> "Tensor":
        arr = np.array(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        strides = tuple(s // arr.itemsize for s in arr.strides) if arr.ndim else ()
        return Tensor(Storage(arr.reshape(-1), key), tuple(arr.shape), strides)


@dataclasses.dataclass(eq=False)
class Param:
    """`torch._utils._rebuild_parameter(tensor, requires_grad, OrderedDict())`."""
    tensor: Tensor
    requires_grad: bool = False


STORAGE_CLASS = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                 "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
                 "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}

ORDERED_DICT = Global("collections", "OrderedDict")


def ordered_dict() -> Reduce:
    return Reduce(ORDERED_DICT, ())


def numpy_scalar(value, dtype: str = "f8", module: str = "numpy._core.multiarray") -> Reduce:
    """`numpy.<core>.multiarray.scalar(numpy.dtype(dtype), raw bytes)` as numpy pickles its scalars."""
    dt = Build(Reduce(Global("numpy", "dtype"), (dtype, False, True)), (3, "<", None, None, None, -1, -1, 0))
    return Reduce(Global(module, "scalar"), (dt, np.asarray(value, dtype=dtype).tobytes()))


# --------------------------------------------------------------------------------------------------------------
# The emitter.

class Emitter:
    """Serialises a tree into pickle opcodes. `storage_mode` says how `Storage` nodes are written:
    'zip' / 'legacy' (persistent ids; the storages are collected in `self.storages`) or 'bytes'
    (`torch.storage._load_from_bytes(<legacy stream>)`)."""

    def __init__(self, protocol: int = 2, storage_mode: str = "zip"):
        self.protocol = protocol
        self.storage_mode = storage_mode
        self.out = io.BytesIO()
        self.storages: dict[str, Storage] = {}
        self._keys: dict[int, str] = {}

    def dumps(self, obj) -> bytes:
        self.out = io.BytesIO()
        self.w(b"\x80" + bytes([self.protocol]))
        self.emit(obj)
        self.w(b".")
        return self.out.getvalue()

    def w(self, b: bytes) -> None:
        self.out.write(b)

    def key_of(self, st: Storage) -> str:
        if id(st) not in self._keys:
            key = st.key if st.key is not None else str(len(self._keys))
            self._keys[id(st)] = key
            self.storages[key] = st
        return self._keys[id(st)]

    def emit(self, x) -> None:  # noqa: C901 - one case per node type
        w = self.w
        if x is None:
            w(b"N")
        elif x is True:
            w(b"\x88")
        elif x is False:
            w(b"\x89")
        elif isinstance(x, int):
            if 0 <= x < 256:
                w(b"K" + bytes([x]))
            elif 0 <= x < 65536:
                w(b"M" + struct.pack("<H", x))
            elif -2 ** 31 <= x < 2 ** 31:
                w(b"J" + struct.pack("<i", x))
            else:
                n = (x.bit_length() + 8) // 8
                w(b"\x8a" + bytes([n]) + x.to_bytes(n, "little", signed=True))
        elif isinstance(x, float):
            w(b"G" + struct.pack(">d", x))
        elif isinstance(x, str):
            raw = x.encode("utf-8")
            if self.protocol >= 4 and len(raw) < 256:
                w(b"\x8c" + bytes([len(raw)]) + raw)
            else:
                w(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(x, (bytes, bytearray)):
            if self.protocol >= 3:
                w(b"C" + bytes([len(x)]) + bytes(x) if len(x) < 256 else b"B" + struct.pack("<I", len(x)) + bytes(x))
            else:
                self.emit(Reduce(Global("_codecs", "encode"), (bytes(x).decode("latin1"), "latin1")))
        elif isinstance(x, tuple):
            if len(x) == 0:
                w(b")")
            elif len(x) <= 3:
                for v in x:
                    self.emit(v)
                w(bytes([0x84 + len(x)]))
            else:
                w(b"(")
                for v in x:
                    self.emit(v)
                w(b"t")
        elif isinstance(x, list):
            w(b"]")
            if x:
                w(b"(")
                for v in x:
                    self.emit(v)
                w(b"e")
        elif isinstance(x, (set, frozenset)):
            if self.protocol >= 4:
                w(b"\x8f")
                if x:
                    w(b"(")
                    for v in sorted(x):
                        self.emit(v)
                    w(b"\x90")
            else:
                self.emit(Reduce(Global("builtins", "set"), (sorted(x),)))
        elif isinstance(x, dict):
            w(b"}")
            if x:
                w(b"(")
                for k, v in x.items():
                    self.emit(k)
                    self.emit(v)
                w(b"u")
        elif isinstance(x, Global):
            if self.protocol >= 4:
                self.emit(x.module)
                self.emit(x.name)
                w(b"\x93")
            else:
                w(b"c" + x.module.encode() + b"\n" + x.name.encode() + b"\n")
        elif isinstance(x, Reduce):
            self.emit(x.func)
            self.emit(tuple(x.args))
            w(b"R")
        elif isinstance(x, NewObj):
            self.emit(x.cls)
            self.emit(tuple(x.args))
            w(b"\x81")
        elif isinstance(x, FilledNewObj):
            self.emit(NewObj(x.cls))
            if x.items:
                w(b"(")
                for k, v in x.items.items():
                    self.emit(k)
                    self.emit(v)
                w(b"u")
        elif isinstance(x, Build):
            self.emit(x.obj)
            self.emit(x.state)
            w(b"b")
        elif isinstance(x, PersId):
            self.emit(x.pid)
            w(b"Q")
        elif isinstance(x, Raw):
            w(x.data)
        elif isinstance(x, Param):
            self.emit(Reduce(Global("torch._utils", "_rebuild_parameter"),
                             (x.tensor, x.requires_grad, ordered_dict())))
        elif isinstance(x, Tensor):
            self.emit(Reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                             (x.storage, x.offset, tuple(x.size), tuple(x.stride), False, ordered_dict())))
        elif isinstance(x, Storage):
            self.emit_storage(x)
        elif isinstance(x, np.ndarray):
            self.emit(Tensor.of(x))
        else:
            raise TypeError(f"pickle_builder cannot emit {type(x).__name__}")

    def emit_storage(self, st: Storage) -> None:
        cls = Global("torch", STORAGE_CLASS[str(st.array.dtype)])
        if self.storage_mode == "zip":
            self.emit(PersId(("storage", cls, self.key_of(st), "cpu", int(st.array.size))))
        elif self.storage_mode == "legacy":
            self.emit(PersId(("storage", cls, self.key_of(st), "cpu", int(st.array.size), None)))
        elif self.storage_mode == "bytes":
            self.emit(Reduce(Global("torch.storage", "_load_from_bytes"), (legacy_storage_stream(st.array),)))
        else:
            raise ValueError(self.storage_mode)


def _raw(arr: np.ndarray) -> bytes:
    if str(arr.dtype) == "bfloat16":
        return arr.view(np.uint16).astype("<u2").tobytes()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def _sys_info() -> dict:
    return {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def torch_legacy_bytes(tree, *, magic: int = LEGACY_MAGIC, protocol_version: int = 1001,
                       drop_storage_data: str | None = None, count_delta: int = 0,
                       omit_key: str | None = None) -> bytes:
    """A legacy `torch.save` stream of `tree` (storages as persistent ids with `view_metadata=None`). The keyword
    arguments break it on purpose: drop a storage's bytes, misstate its element count, or leave a key out of the
    key list (and its bytes)."""
    em = Emitter(2, "legacy")
    main = em.dumps(tree)
    head = Emitter(2).dumps(magic) + Emitter(2).dumps(protocol_version) + Emitter(2).dumps(_sys_info())
    keys = [k for k in em.storages if k != omit_key]
    out = head + main + Emitter(2).dumps(keys)
    for key in keys:
        if key == drop_storage_data:
            continue
        arr = em.storages[key].array
        out += struct.pack("<q", arr.size + count_delta) + _raw(arr)
    return out


def legacy_storage_stream(arr: np.ndarray) -> bytes:
    """What `torch.storage._load_from_bytes` receives: a legacy stream whose object is one storage."""
    return torch_legacy_bytes(Storage(np.asarray(arr).reshape(-1), key="94000000000000"))


def torch_zip_bytes(tree, *, folder: str = "archive", drop_storage: str | None = None,
                    byteorder: str = "little") -> bytes:
    """A `torch.save` zip checkpoint of `tree`."""
    em = Emitter(2, "zip")
    pkl = em.dumps(tree)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{folder}/data.pkl", pkl)
        zf.writestr(f"{folder}/.format_version", "1")
        zf.writestr(f"{folder}/byteorder", byteorder)
        for key, st in em.storages.items():
            if key == drop_storage:
                continue
            raw = _raw(st.array)
            if byteorder == "big":
                raw = st.array.astype(st.array.dtype.newbyteorder(">")).tobytes()
            zf.writestr(f"{folder}/data/{key}", raw)
        zf.writestr(f"{folder}/version", "3\n")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------------
# stylegan2-ada network pickles.

_BUFFER_NAMES = {"w_avg", "noise_const", "resample_filter", "p", "Hz_geom", "Hz_fbank"}
_HOOK_FIELDS = ("_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
                "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
                "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def _class_for(path: str, root_class: str) -> str:
    last = path.split(".")[-1] if path else ""
    if not path:
        return root_class
    if last == "mapping":
        return "MappingNetwork"
    if last == "synthesis":
        return "SynthesisNetwork"
    if last in ("affine", "embed") or last.startswith("fc"):
        return "FullyConnectedLayer"
    if last in ("conv0", "conv1"):
        return "SynthesisLayer" if root_class == "Generator" else "Conv2dLayer"
    if last == "torgb":
        return "ToRGBLayer"
    if last == "fromrgb" or last == "skip":
        return "Conv2dLayer"
    if last.startswith("b") and last[1:].isdigit():
        return "SynthesisBlock" if root_class == "Generator" else "DiscriminatorBlock"
    return "DiscriminatorEpilogue"


def _module_tree(state_dict: Mapping[str, np.ndarray]) -> dict:
    """Nested {'params': {}, 'buffers': {}, 'modules': {name: subtree}} from flat torch names."""
    root: dict = {"params": {}, "buffers": {}, "modules": {}}
    for key, arr in state_dict.items():
        *path, name = key.split(".")
        node = root
        for p in path:
            node = node["modules"].setdefault(p, {"params": {}, "buffers": {}, "modules": {}})
        node["buffers" if name in _BUFFER_NAMES else "params"][name] = np.asarray(arr)
    return root


def persistent(class_name: str, state: dict, *, module_src: str = PLACEHOLDER_SRC, version: int = 6) -> Reduce:
    """`torch_utils.persistence._reconstruct_persistent_obj(meta)` with upstream's meta layout."""
    meta = {"type": "class", "version": version, "module_src": module_src, "class_name": class_name,
            "state": state}
    return Reduce(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), (meta,))


def _module_node(tree: dict, path: str, root_class: str, init_kwargs: dict | None, module_src: str,
                 scalar_module: str) -> Reduce:
    cls = _class_for(path, root_class)
    state: dict = {"training": False,
                   "_parameters": {k: Param(Tensor.of(v), requires_grad=False) for k, v in tree["params"].items()},
                   "_buffers": {k: Tensor.of(v) for k, v in tree["buffers"].items()},
                   "_non_persistent_buffers_set": set()}
    for f in _HOOK_FIELDS:
        state[f] = None if f == "_is_full_backward_hook" else ordered_dict()
    state["_modules"] = {name: _module_node(sub, f"{path}.{name}" if path else name, root_class, None, module_src,
                                            scalar_module)
                         for name, sub in tree["modules"].items()}
    if cls == "FullyConnectedLayer" and "weight" in tree["params"]:
        out_f, in_f = tree["params"]["weight"].shape
        lr = 0.01 if path.startswith("mapping.fc") else 1.0
        state.update(activation="linear" if "affine" in path or "embed" in path else "lrelu",
                     weight_gain=numpy_scalar(lr / np.sqrt(in_f), module=scalar_module), bias_gain=lr)
        kwargs = {"in_features": in_f, "out_features": out_f}
    else:
        kwargs = {}
    state["_init_args"] = ()
    state["_init_kwargs"] = NewObj(Global("dnnlib.util", "EasyDict")) if not (init_kwargs or kwargs) else \
        _easydict(init_kwargs if init_kwargs is not None else kwargs)
    return persistent(cls, state, module_src=module_src)


def _easydict(d: Mapping) -> "FilledNewObj":
    """`dnnlib.util.EasyDict` as pickle writes a dict subclass: NEWOBJ, then SETITEMS (nested dicts too)."""
    items = {k: (_easydict(v) if isinstance(v, Mapping) else v) for k, v in d.items()}
    return FilledNewObj(Global("dnnlib.util", "EasyDict"), items)


def network_node(state_dict: Mapping[str, np.ndarray], class_name: str, init_kwargs: dict, *,
                 module_src: str = PLACEHOLDER_SRC, scalar_module: str = "numpy._core.multiarray") -> Reduce:
    """One persistent network (e.g. `G_ema`) holding `state_dict`, with `init_kwargs` in its state."""
    return _module_node(_module_tree(state_dict), "", class_name, init_kwargs, module_src, scalar_module)


def network_pickle_bytes(g_ema: Mapping[str, np.ndarray], g: Mapping[str, np.ndarray], init_kwargs: dict, *,
                         d: Mapping[str, np.ndarray] | None = None, augment: Mapping[str, np.ndarray] | None = None,
                         module_src: str = PLACEHOLDER_SRC, extra: Mapping[str, Any] | None = None,
                         scalar_module: str = "numpy._core.multiarray") -> bytes:
    """A stylegan2-ada snapshot pickle: `{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe'}`."""
    rng = np.random.default_rng(7)
    if d is None:
        d = {"b32.fromrgb.weight": rng.standard_normal((64, 3, 1, 1), np.float32),
             "b32.fromrgb.bias": rng.standard_normal(64, np.float32),
             "b32.conv0.resample_filter": np.full((4, 4), 1 / 16, np.float32),
             "b4.fc.weight": rng.standard_normal((64, 1024), np.float32),
             "b4.out.weight": rng.standard_normal((1, 64), np.float32)}
    if augment is None:
        augment = {"p": np.array(0.23, np.float32), "Hz_geom": rng.standard_normal(12, np.float32)}
    d_kwargs = {"c_dim": init_kwargs.get("c_dim", 0), "img_resolution": init_kwargs.get("img_resolution", 32),
                "img_channels": 3, "block_kwargs": {}, "mapping_kwargs": {}, "epilogue_kwargs": {}}
    tree = {
        "training_set_kwargs": _easydict({"class_name": "training.dataset.ImageFolderDataset",
                                          "path": "datasets/builder.zip", "use_labels": True, "max_size": 1000,
                                          "xflip": False, "resolution": init_kwargs.get("img_resolution", 32)}),
        "G": network_node(g, "Generator", init_kwargs, module_src=module_src, scalar_module=scalar_module),
        "D": network_node(d, "Discriminator", d_kwargs, module_src=module_src, scalar_module=scalar_module),
        "G_ema": network_node(g_ema, "Generator", init_kwargs, module_src=module_src, scalar_module=scalar_module),
        "augment_pipe": network_node(augment, "AugmentPipe", {"xflip": 1, "rotate90": 1}, module_src=module_src),
    }
    if extra:
        tree.update(extra)
    return Emitter(4, "bytes").dumps(tree)


def globals_used(data: bytes) -> set[tuple[str, str]]:
    """(module, name) of every GLOBAL / STACK_GLOBAL in a pickle (parsing only; for comparing layouts)."""
    import pickletools

    out: set = set()
    pushed: list = []   # value of every push (strings; None for anything else), to read STACK_GLOBAL operands
    memo: dict = {}
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        name = op.name
        if name == "GLOBAL":
            out.add(tuple(arg.split(" ", 1)))
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            out.add((pushed[-2], pushed[-1]))
            pushed.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            pushed.append(arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = pushed[-1]
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            pushed.append(memo.get(arg))
        elif name == "STOP":
            break
        else:
            pushed.append(None)
    return out
