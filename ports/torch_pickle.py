"""A restricted, torch-free reader for PyTorch-world files: zip checkpoints, legacy `torch.save` streams and plain
pickles with tensors inside (stylegan2-ada network pickles included).

Nothing from the file is imported, executed or looked up by name. The pickle opcodes are interpreted by a small
virtual machine of our own (not `pickle.Unpickler`), in which a global is only ever resolved against the
allow-list below; every other global (`os.system`, `builtins.eval`, `subprocess.*`, unknown modules, whole
`torch.nn` modules, ...) raises `UnsafePickleError` naming it and its byte offset before anything is built.

What comes back:
* tensors and storages → `np.ndarray` (own memory, C-contiguous; storage offset, size and stride honoured; dtypes
  float16/32/64, bfloat16 (as `jax.numpy.bfloat16`), int8/16/32/64, uint8, bool, complex64/128);
* `collections.OrderedDict` stays one, `dnnlib.util.EasyDict` and `argparse.Namespace` (rosinality's training
  checkpoints store their command-line args) become plain `dict`s, `torch.Size` a tuple,
  `torch.device` a string, torch dtypes `np.dtype`s, numpy scalars numpy scalars, numpy arrays numpy arrays;
* stylegan2-ada *persistent-class* objects (`torch_utils.persistence._reconstruct_persistent_obj(meta)`) become
  inert `PersistentObject` records: class name, version, the module's `state` (its `__dict__`), constructor kwargs,
  and `state_dict()` in torch naming. The embedded module source is never executed, parsed or even kept: we only
  record that it was there (`has_source`).

Formats (detected from the bytes, not the file name):
* zip: one top-level folder of any name, `<folder>/data.pkl` + raw little-endian `<folder>/data/<key>` storages;
  persistent ids `('storage', StorageType, key, location, numel)`.
* legacy: pickled magic number, protocol 1001, sys-info dict, the main pickle (persistent ids
  `('storage', StorageType, root_key, location, numel, view_metadata)`), the pickled list of storage keys, then per
  key an int64 element count and the raw bytes.
* plain pickle: anything else starting with a pickle; storages inside appear as `torch.storage._load_from_bytes(b)`
  with `b` a complete legacy stream of one storage.

Errors are `TorchFileError` subclasses (all `ValueError`s) that say what is wrong and where.
"""
from __future__ import annotations

import codecs
import collections
import dataclasses
import io
import os
import pickletools
import struct
import zipfile
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np

__all__ = ["load", "loads", "PersistentObject", "TorchFileError", "UnsafePickleError", "TruncatedFileError",
           "MissingStorageError", "BadMagicError", "CorruptFileError", "UnsupportedFormatError"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_NESTING = 2          # storage streams inside pickles may not themselves hold storage streams
_MAX_LONG_BYTES = 1 << 16  # LONG1/LONG4 integers longer than this are not plausible in a checkpoint


# --------------------------------------------------------------------------------------------------------------
# Errors.

class TorchFileError(ValueError):
    """Base class: the file cannot be read safely or is not what it claims to be."""


class UnsafePickleError(TorchFileError):
    """The pickle reaches for a global (or mechanism) that is not on the allow-list; nothing was called."""


class TruncatedFileError(TorchFileError):
    """The data ends before the structure it announces does."""


class MissingStorageError(TorchFileError):
    """A tensor refers to a storage record that the file does not contain."""


class BadMagicError(TorchFileError):
    """A legacy `torch.save` stream with a wrong magic number or protocol version."""


class CorruptFileError(TorchFileError):
    """The structure is inconsistent: bad opcode, wrong argument types, a tensor outside its storage, ..."""


class UnsupportedFormatError(TorchFileError):
    """A recognised but unsupported format (TensorFlow-era pickles, big-endian files, out-of-band buffers)."""


# --------------------------------------------------------------------------------------------------------------
# Inert records.

# Upstream classes whose module we can name without reading the embedded source (stylegan2-ada / stylegan3).
_KNOWN_PERSISTENT_MODULES = {
    **{c: "training.networks" for c in (
        "Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer", "SynthesisInput",
        "ToRGBLayer", "FullyConnectedLayer", "Conv2dLayer", "Discriminator", "DiscriminatorBlock",
        "DiscriminatorEpilogue", "MinibatchStdLayer")},
    "AugmentPipe": "training.augment",
}


@dataclasses.dataclass(eq=False)
class PersistentObject:
    """A stylegan2-ada persistent-class object, kept as data.

    `state` is the module's `__dict__` as pickled (its `_parameters`, `_buffers` and `_modules` hold the tensors
    and submodules). `module_name` is inferred from `class_name` for the known upstream classes (the pickle itself
    stores only the module's source text, which we neither run nor parse); None otherwise."""

    class_name: str
    version: Any
    state: dict
    has_source: bool
    module_name: str | None = None
    type: str = "class"

    @property
    def init_kwargs(self) -> dict:
        """The constructor's keyword arguments (`state['_init_kwargs']`), as a dict."""
        kw = self.state.get("_init_kwargs")
        return dict(kw) if isinstance(kw, Mapping) else {}

    @property
    def init_args(self) -> tuple:
        args = self.state.get("_init_args")
        return tuple(args) if isinstance(args, (list, tuple)) else ()

    @property
    def modules(self) -> dict:
        """Direct submodules (`state['_modules']`), None entries dropped."""
        mods = self.state.get("_modules") or {}
        return {k: v for k, v in mods.items() if v is not None}

    def state_dict(self, prefix: str = "") -> dict[str, np.ndarray]:
        """All parameters and persistent buffers of this module and its submodules, named as torch's
        `state_dict()` names them (`prefix.name`, torch's order); None entries dropped."""
        out: dict[str, np.ndarray] = {}
        try:
            self._collect(prefix, out, seen=set())
        except RecursionError:
            raise CorruptFileError(f"{self.class_name}: submodules nested too deeply") from None
        return out

    def _collect(self, prefix: str, out: dict, seen: set) -> None:
        if id(self) in seen:
            raise CorruptFileError(f"persistent object {self.class_name} at '{prefix or '<root>'}' contains itself")
        seen = seen | {id(self)}
        non_persistent = self.state.get("_non_persistent_buffers_set") or set()
        for field in ("_parameters", "_buffers"):
            table = self.state.get(field) or {}
            if not isinstance(table, Mapping):
                raise CorruptFileError(f"{self.class_name} at '{prefix or '<root>'}': {field} is "
                                       f"{type(table).__name__}, expected a dict")
            for name, value in table.items():
                if value is None or (field == "_buffers" and name in non_persistent):
                    continue
                if not isinstance(value, np.ndarray):
                    raise CorruptFileError(f"{self.class_name} at '{prefix or '<root>'}': {field}[{name!r}] is "
                                           f"{type(value).__name__}, expected a tensor")
                out[prefix + str(name)] = value
        for name, sub in self.modules.items():
            if not isinstance(sub, PersistentObject):
                raise CorruptFileError(f"{self.class_name} at '{prefix or '<root>'}': submodule {name!r} is "
                                       f"{type(sub).__name__}, not a persistent object")
            sub._collect(f"{prefix}{name}.", out, seen)

    def __repr__(self) -> str:
        try:
            n = len(self.state_dict())
        except TorchFileError:
            n = "?"
        return (f"PersistentObject({self.module_name or '?'}.{self.class_name}, version={self.version!r}, "
                f"{n} tensors, init_kwargs={sorted(self.init_kwargs)})")


@dataclasses.dataclass(eq=False)
class _Storage:
    """A flat typed storage; `array` is None until a legacy file's data section has been read."""

    key: str
    dtype: np.dtype
    numel: int
    location: str
    array: np.ndarray | None = None
    base: "_Storage | None" = None   # legacy views: element `offset` of `base`
    offset: int = 0

    def data(self, where: str) -> np.ndarray:
        if self.base is not None:
            root = self.base.data(where)
            return root[self.offset:self.offset + self.numel]
        if self.array is None:
            raise MissingStorageError(f"storage {self.key!r} was never filled{where}")
        return self.array


@dataclasses.dataclass(eq=False)
class _PendingTensor:
    """A tensor over a storage whose bytes come later in the file (legacy format)."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple
    dtype: np.dtype | None
    where: str

    def materialise(self) -> np.ndarray:
        return _view(self.storage.data(self.where), self.offset, self.size, self.stride, self.dtype, self.where)


@dataclasses.dataclass(frozen=True, eq=False)
class _Global:
    """An allow-listed global. `call` is our own handler (None: a class token that may only be referred to)."""

    module: str
    name: str
    call: Callable | None = None
    storage_dtype: str | None = None  # storage classes used in persistent ids

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


# --------------------------------------------------------------------------------------------------------------
# dtypes.

_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
_TORCH_DTYPES = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64", "float16": "float16",
    "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool", "complex64": "complex64",
    "cfloat": "complex64", "complex128": "complex128", "cdouble": "complex128",
}


def _np_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import jax.numpy as jnp  # numpy has no bfloat16; jax's (ml_dtypes) is the one the rest of the code uses

        return np.dtype(jnp.bfloat16)
    return np.dtype(name).newbyteorder("<")


def _view(flat: np.ndarray, offset: int, size: tuple, stride: tuple, dtype: np.dtype | None, where: str) -> np.ndarray:
    """torch's `as_strided(storage, size, stride, offset)` on a 1-D array, bounds-checked, copied."""
    if dtype is not None and dtype != flat.dtype:
        raw = flat.view(np.uint8)
        if raw.size % dtype.itemsize:
            raise CorruptFileError(f"storage of {raw.size} bytes cannot be viewed as {dtype}{where}")
        flat = raw.view(dtype)
    if not (isinstance(offset, int) and offset >= 0):
        raise CorruptFileError(f"tensor storage offset {offset!r} is not a non-negative integer{where}")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size + stride)):
        raise CorruptFileError(f"tensor size {size!r} / stride {stride!r} are not matching tuples of "
                               f"non-negative integers{where}")
    if any(n == 0 for n in size):
        return np.zeros(size, flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise CorruptFileError(f"tensor of size {list(size)}, stride {list(stride)}, offset {offset} reaches element "
                               f"{last} of a storage with {flat.size} elements{where}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=tuple(s * flat.itemsize for s in stride), writeable=False)
    return np.array(view, dtype=flat.dtype, order="C", copy=True)


# --------------------------------------------------------------------------------------------------------------
# Handlers for allow-listed callables. Each receives (args tuple, context) and builds plain data only.

def _check_args(g: str, args: tuple, lo: int, hi: int, where: str) -> None:
    if not isinstance(args, tuple) or not lo <= len(args) <= hi:
        n = len(args) if isinstance(args, tuple) else type(args).__name__
        raise CorruptFileError(f"{g} called with {n} arguments, expected {lo}..{hi}{where}")


def _h_ordered_dict(args, ctx):
    _check_args("collections.OrderedDict", args, 0, 1, ctx.where())
    try:
        return collections.OrderedDict(*args)
    except (TypeError, ValueError) as e:
        raise CorruptFileError(f"collections.OrderedDict{args!r:.80}: {e}{ctx.where()}") from None


def _h_easydict(args, ctx):
    _check_args("dnnlib.util.EasyDict", args, 0, 1, ctx.where())
    if args and not isinstance(args[0], (Mapping, list, tuple)):
        raise CorruptFileError(f"dnnlib.util.EasyDict from {type(args[0]).__name__}{ctx.where()}")
    try:
        return dict(*args)
    except (TypeError, ValueError) as e:
        raise CorruptFileError(f"dnnlib.util.EasyDict: {e}{ctx.where()}") from None


def _h_namespace(args, ctx):
    # rosinality's train.py saves its argparse.Namespace ("args"); NEWOBJ + BUILD(__dict__) → a plain dict
    if args:
        raise CorruptFileError(f"argparse.Namespace called with arguments{ctx.where()}")
    return {}


def _h_set(args, ctx, kind=set):
    _check_args(f"builtins.{kind.__name__}", args, 0, 1, ctx.where())
    try:
        return kind(*args)
    except TypeError as e:
        raise CorruptFileError(f"builtins.{kind.__name__}: {e}{ctx.where()}") from None


def _h_bytearray(args, ctx):
    _check_args("builtins.bytearray", args, 0, 1, ctx.where())
    if args and not isinstance(args[0], (bytes, bytearray)):
        raise CorruptFileError(f"builtins.bytearray from {type(args[0]).__name__}{ctx.where()}")
    return bytearray(*args)


def _h_complex(args, ctx):
    _check_args("builtins.complex", args, 1, 2, ctx.where())
    if not all(isinstance(a, (int, float)) for a in args):
        raise CorruptFileError(f"builtins.complex of non-numbers{ctx.where()}")
    return complex(*args)


def _h_codecs_encode(args, ctx):
    # protocol-2 pickles spell bytes as _codecs.encode(text, 'latin1')
    _check_args("_codecs.encode", args, 1, 2, ctx.where())
    text = args[0]
    enc = args[1] if len(args) > 1 else "utf-8"
    if not isinstance(text, str) or enc not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise UnsafePickleError(f"refusing _codecs.encode({type(text).__name__}, {enc!r}){ctx.where()}")
    return text.encode(enc)


def _h_torch_size(args, ctx):
    _check_args("torch.Size", args, 0, 1, ctx.where())
    dims = tuple(args[0]) if args else ()
    if not all(isinstance(d, int) for d in dims):
        raise CorruptFileError(f"torch.Size{dims!r:.80} has non-integer entries{ctx.where()}")
    return dims


def _h_torch_device(args, ctx):
    _check_args("torch.device", args, 1, 2, ctx.where())
    if not isinstance(args[0], str):
        raise CorruptFileError(f"torch.device({args[0]!r:.40}){ctx.where()}")
    return args[0] if len(args) == 1 else f"{args[0]}:{args[1]}"


def _as_storage(obj, g, ctx) -> _Storage:
    if not isinstance(obj, _Storage):
        raise CorruptFileError(f"{g}: first argument is {type(obj).__name__}, expected a storage{ctx.where()}")
    return obj


def _make_tensor(storage: _Storage, offset, size, stride, dtype, ctx):
    size = tuple(size) if isinstance(size, (list, tuple)) else size
    stride = tuple(stride) if isinstance(stride, (list, tuple)) else stride
    if storage.array is None and (storage.base is None or storage.base.array is None):
        # legacy file: the bytes come after the main pickle; the tensor is cut out once they have been read
        return _PendingTensor(storage, offset, size, stride, dtype, ctx.where())
    return _view(storage.data(ctx.where()), offset, size, stride, dtype, ctx.where())


def _h_rebuild_tensor(args, ctx):          # torch._utils._rebuild_tensor(storage, offset, size, stride)
    _check_args("torch._utils._rebuild_tensor", args, 4, 4, ctx.where())
    st = _as_storage(args[0], "torch._utils._rebuild_tensor", ctx)
    return _make_tensor(st, args[1], args[2], args[3], None, ctx)


def _h_rebuild_tensor_v2(args, ctx):       # (storage, offset, size, stride, requires_grad, hooks[, metadata])
    _check_args("torch._utils._rebuild_tensor_v2", args, 6, 7, ctx.where())
    st = _as_storage(args[0], "torch._utils._rebuild_tensor_v2", ctx)
    return _make_tensor(st, args[1], args[2], args[3], None, ctx)


def _h_rebuild_tensor_v3(args, ctx):       # (storage, offset, size, stride, requires_grad, hooks, dtype[, metadata])
    _check_args("torch._utils._rebuild_tensor_v3", args, 7, 8, ctx.where())
    st = _as_storage(args[0], "torch._utils._rebuild_tensor_v3", ctx)
    if not isinstance(args[6], np.dtype):
        raise CorruptFileError(f"torch._utils._rebuild_tensor_v3: dtype argument is {args[6]!r:.40}{ctx.where()}")
    return _make_tensor(st, args[1], args[2], args[3], args[6], ctx)


def _h_rebuild_parameter(args, ctx):       # (data, requires_grad, hooks[, state])
    _check_args("torch._utils._rebuild_parameter", args, 3, 4, ctx.where())
    if not isinstance(args[0], (np.ndarray, _PendingTensor)):
        raise CorruptFileError(f"torch._utils._rebuild_parameter of {type(args[0]).__name__}{ctx.where()}")
    return args[0]


def _h_rebuild_from_type_v2(args, ctx):    # torch._tensor._rebuild_from_type_v2(func, new_type, args, state)
    _check_args("torch._tensor._rebuild_from_type_v2", args, 4, 4, ctx.where())
    func, new_type, inner, _state = args
    if not (isinstance(func, _Global) and func.call is not None and func.name.startswith("_rebuild_")):
        raise UnsafePickleError(f"refusing torch._tensor._rebuild_from_type_v2 with function {func!r:.60}"
                                f"{ctx.where()}")
    if not (isinstance(new_type, _Global) and new_type.name in ("Tensor", "Parameter")):
        raise UnsafePickleError(f"refusing tensor subclass {new_type!r:.60}{ctx.where()}")
    return ctx.call(func, inner)


def _h_numpy_dtype(args, ctx):             # numpy.dtype(name, align, copy)
    _check_args("numpy.dtype", args, 1, 3, ctx.where())
    name = args[0]
    if isinstance(name, bytes):
        name = name.decode("ascii", "replace")
    if not isinstance(name, str) or not name or len(name) > 16 or not name.replace("<", "").replace(">", "") \
            .replace("|", "").replace("=", "").isalnum():
        raise CorruptFileError(f"numpy.dtype({args[0]!r:.40}) is not a simple dtype name{ctx.where()}")
    try:
        dt = np.dtype(name)
    except TypeError as e:
        raise CorruptFileError(f"numpy.dtype({name!r}): {e}{ctx.where()}") from None
    if dt.hasobject:
        raise UnsafePickleError(f"refusing numpy object dtype {name!r} (would unpickle arbitrary objects)"
                                f"{ctx.where()}")
    return dt


def _h_numpy_scalar(args, ctx):            # numpy.core.multiarray.scalar(dtype, raw bytes)
    _check_args("numpy.core.multiarray.scalar", args, 1, 2, ctx.where())
    dt = args[0]
    if not isinstance(dt, np.dtype) or dt.hasobject:
        raise UnsafePickleError(f"refusing numpy scalar of dtype {dt!r:.40}{ctx.where()}")
    raw = args[1] if len(args) > 1 else b"\0" * dt.itemsize
    if isinstance(raw, str):   # protocol-2 pickles read with a text encoding
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != dt.itemsize:
        raise CorruptFileError(f"numpy scalar of {dt}: {len(raw) if isinstance(raw, (bytes, bytearray)) else raw!r:.40}"
                               f" bytes, expected {dt.itemsize}{ctx.where()}")
    return np.frombuffer(bytes(raw), dtype=dt)[0]


@dataclasses.dataclass(eq=False)
class _ArrayStub:
    """`numpy.core.multiarray._reconstruct(ndarray, shape, b'b')`, waiting for its BUILD."""
    shape: tuple


def _h_numpy_reconstruct(args, ctx):
    _check_args("numpy.core.multiarray._reconstruct", args, 3, 3, ctx.where())
    if not (isinstance(args[0], _Global) and args[0].name == "ndarray"):
        raise UnsafePickleError(f"refusing numpy array subclass {args[0]!r:.60}{ctx.where()}")
    return _ArrayStub(tuple(args[1]) if isinstance(args[1], (list, tuple)) else ())


def _h_numpy_frombuffer(args, ctx):        # numpy.core.numeric._frombuffer(buf, dtype, shape, order)
    _check_args("numpy.core.numeric._frombuffer", args, 4, 4, ctx.where())
    buf, dt, shape, order = args
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dt, np.dtype) or dt.hasobject:
        raise UnsafePickleError(f"refusing numpy._frombuffer({type(buf).__name__}, {dt!r:.30}){ctx.where()}")
    return _array_from_bytes(buf, dt, shape, order == "F", ctx)


def _array_from_bytes(raw, dt, shape, fortran, ctx) -> np.ndarray:
    shape = tuple(shape) if isinstance(shape, (list, tuple)) else shape
    if not (isinstance(shape, tuple) and all(isinstance(v, int) and v >= 0 for v in shape)):
        raise CorruptFileError(f"numpy array shape {shape!r:.60}{ctx.where()}")
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) != n * dt.itemsize:
        raise CorruptFileError(f"numpy array {list(shape)} of {dt} needs {n * dt.itemsize} bytes, got {len(raw)}"
                               f"{ctx.where()}")
    arr = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C")
    return np.array(arr, order="C", copy=True)


def _h_persistent_obj(args, ctx):          # torch_utils.persistence._reconstruct_persistent_obj(meta)
    _check_args("torch_utils.persistence._reconstruct_persistent_obj", args, 1, 1, ctx.where())
    meta = args[0]
    if not isinstance(meta, Mapping):
        raise CorruptFileError(f"persistent object meta is {type(meta).__name__}, expected a dict{ctx.where()}")
    kind = meta.get("type", "class")
    if kind != "class":
        raise UnsupportedFormatError(f"persistent object of type {kind!r} (only 'class' exists upstream)"
                                     f"{ctx.where()}")
    name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(name, str) or not name.isidentifier():
        raise CorruptFileError(f"persistent object class_name {name!r:.60} is not an identifier{ctx.where()}")
    if state is None:
        state = {}
    if not isinstance(state, Mapping):
        raise CorruptFileError(f"persistent object {name}: state is {type(state).__name__}, expected a dict"
                               f"{ctx.where()}")
    src = meta.get("module_src")
    return PersistentObject(class_name=name, version=meta.get("version"), state=dict(state),
                            has_source=isinstance(src, str) and len(src) > 0,
                            module_name=_KNOWN_PERSISTENT_MODULES.get(name), type=kind)


def _h_load_from_bytes(args, ctx):         # torch.storage._load_from_bytes(b): a legacy stream of one storage
    _check_args("torch.storage._load_from_bytes", args, 1, 1, ctx.where())
    b = args[0]
    if not isinstance(b, (bytes, bytearray)):
        raise CorruptFileError(f"torch.storage._load_from_bytes of {type(b).__name__}{ctx.where()}")
    if ctx.depth + 1 > _MAX_NESTING:
        raise UnsafePickleError(f"refusing nested torch.storage._load_from_bytes{ctx.where()}")
    inner_where = (f" inside the storage stream passed to torch.storage._load_from_bytes at byte offset {ctx.op_pos}"
                   f"{ctx._where}")
    obj = _load_legacy(bytes(b), depth=ctx.depth + 1, where=inner_where)
    if not isinstance(obj, _Storage):
        raise CorruptFileError(f"torch.storage._load_from_bytes produced {type(obj).__name__}, expected a storage"
                               f"{ctx.where()}")
    return obj


# --------------------------------------------------------------------------------------------------------------
# The allow-list.

def _allow() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}

    def fn(module, name, call):
        table[(module, name)] = _Global(module, name, call)

    fn("collections", "OrderedDict", _h_ordered_dict)
    for mod in ("dnnlib.util", "dnnlib"):
        fn(mod, "EasyDict", _h_easydict)
    for mod in ("builtins", "__builtin__"):
        fn(mod, "set", _h_set)
        fn(mod, "frozenset", lambda a, c: _h_set(a, c, frozenset))
        fn(mod, "bytearray", _h_bytearray)
        fn(mod, "complex", _h_complex)
    fn("_codecs", "encode", _h_codecs_encode)
    fn("argparse", "Namespace", _h_namespace)
    fn("torch", "Size", _h_torch_size)
    fn("torch", "device", _h_torch_device)
    fn("torch._utils", "_rebuild_tensor", _h_rebuild_tensor)
    fn("torch._utils", "_rebuild_tensor_v2", _h_rebuild_tensor_v2)
    fn("torch._utils", "_rebuild_tensor_v3", _h_rebuild_tensor_v3)
    fn("torch._utils", "_rebuild_parameter", _h_rebuild_parameter)
    fn("torch._utils", "_rebuild_parameter_with_state", _h_rebuild_parameter)
    fn("torch._tensor", "_rebuild_from_type_v2", _h_rebuild_from_type_v2)
    for mod, name in (("torch._tensor", "Tensor"), ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"),
                      ("numpy", "ndarray")):
        table[(mod, name)] = _Global(mod, name)          # class tokens: may be referred to, never called
    for name, dt in _STORAGE_DTYPES.items():
        for mod in ("torch", "torch.storage"):
            table[(mod, name)] = _Global(mod, name, storage_dtype=dt)
    for name, dt in _TORCH_DTYPES.items():
        table[("torch", name)] = ("dtype", dt)          # a value, resolved lazily (bfloat16 needs jax)
    fn("torch.storage", "_load_from_bytes", _h_load_from_bytes)
    fn("torch_utils.persistence", "_reconstruct_persistent_obj", _h_persistent_obj)
    fn("numpy", "dtype", _h_numpy_dtype)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        fn(mod, "scalar", _h_numpy_scalar)
        fn(mod, "_reconstruct", _h_numpy_reconstruct)
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        fn(mod, "_frombuffer", _h_numpy_frombuffer)
    return table


_ALLOWED = _allow()


def _refuse(module: str, name: str, where: str) -> TorchFileError:
    if not all(part.isidentifier() for part in f"{module}.{name}".split(".")):
        module, name = repr(module), repr(name)   # odd bytes in the name: show them escaped
    if module == "dnnlib.tflib.network":
        return UnsupportedFormatError(f"refusing global {module}.{name}{where}: this is a TensorFlow-era StyleGAN "
                                      f"pickle, which this reader does not support (convert it to a stylegan2-ada-"
                                      f"pytorch pickle first)")
    hint = ""
    if module.startswith("torch.nn.modules") or module.startswith("torch.nn."):
        hint = (" (the file pickles a whole torch.nn module, i.e. torch.save(model); only state dicts, tensors and "
                "stylegan2-ada persistent objects can be read; save model.state_dict() instead)")
    return UnsafePickleError(f"refusing global {module}.{name}{where}: not on the allow-list of ports.torch_pickle; "
                             f"nothing from the file is imported or run{hint}")


# --------------------------------------------------------------------------------------------------------------
# The pickle virtual machine.

class _VM:
    """Interprets one pickle from `buf[start:]`; `run()` returns (value, end offset). Globals resolve only through
    `_ALLOWED`; persistent ids go to `persistent_load` (None: refused)."""

    def __init__(self, buf: bytes, start: int = 0, *, persistent_load: Callable | None = None, depth: int = 0,
                 where: str = ""):
        self.buf = memoryview(buf)
        self.pos = start
        self.op_pos = start
        self.persistent_load = persistent_load
        self.depth = depth
        self._where = where
        self.stack: list = []
        self.metastack: list = []
        self.memo: dict = {}

    # -- helpers -----------------------------------------------------------------------------------------------
    def where(self) -> str:
        return f" at byte offset {self.op_pos}{self._where}"

    def read(self, n: int) -> bytes:
        if n < 0:
            raise CorruptFileError(f"negative length {n}{self.where()}")
        end = self.pos + n
        if end > len(self.buf):
            raise TruncatedFileError(f"data ends at byte {len(self.buf)} but {n} more bytes are needed from byte "
                                     f"{self.pos}{self.where()} (truncated file?)")
        out = self.buf[self.pos:end].tobytes()
        self.pos = end
        return out

    def readline(self) -> bytes:
        buf = self.buf
        i = self.pos
        n = len(buf)
        while i < n and buf[i] != 10:
            i += 1
        if i >= n:
            raise TruncatedFileError(f"data ends inside a text argument{self.where()} (truncated file?)")
        out = buf[self.pos:i].tobytes()
        self.pos = i + 1
        return out

    def pop_mark(self) -> list:
        if not self.metastack:
            raise CorruptFileError(f"MARK expected on the stack{self.where()}")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def pop(self):
        if not self.stack:
            raise CorruptFileError(f"pickle stack underflow{self.where()}")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            raise CorruptFileError(f"pickle stack underflow{self.where()}")
        return self.stack[-1]

    def find_global(self, module: str, name: str):
        entry = _ALLOWED.get((module, name))
        if entry is None:
            raise _refuse(module, name, self.where())
        if isinstance(entry, tuple):  # a torch dtype value
            return _np_dtype(entry[1])
        return entry

    def call(self, func, args):
        if not isinstance(func, _Global):
            raise UnsafePickleError(f"refusing to call an object of type {type(func).__name__} (only allow-listed "
                                    f"functions can be called){self.where()}")
        if func.call is None:
            raise UnsafePickleError(f"refusing to call {func.qualname} (allowed only as a reference){self.where()}")
        if not isinstance(args, tuple):
            raise CorruptFileError(f"arguments of {func.qualname} are {type(args).__name__}, not a tuple"
                                   f"{self.where()}")
        return func.call(args, self)

    def replace_memo(self, old, new) -> None:
        for k, v in self.memo.items():
            if v is old:
                self.memo[k] = new

    def build(self, inst, state):
        """BUILD: only on objects whose state we understand; nothing's __setstate__ is called."""
        if isinstance(inst, np.dtype):
            if not (isinstance(state, tuple) and len(state) >= 8):
                raise CorruptFileError(f"numpy dtype state {state!r:.80}{self.where()}")
            order, subdescr, names, fields = state[1], state[2], state[3], state[4]
            if subdescr is not None or names is not None or fields is not None:
                raise UnsupportedFormatError(f"structured/sub-array numpy dtype{self.where()}")
            if order == ">":
                new = inst.newbyteorder(">")
                self.replace_memo(inst, new)
                return new
            return inst
        if isinstance(inst, _ArrayStub):
            if not (isinstance(state, tuple) and len(state) == 5):
                raise CorruptFileError(f"numpy array state of length {len(state) if isinstance(state, tuple) else '?'}"
                                       f"{self.where()}")
            _, shape, dt, fortran, raw = state
            if not isinstance(dt, np.dtype) or dt.hasobject or not isinstance(raw, (bytes, bytearray, str)):
                raise UnsafePickleError(f"refusing numpy array of dtype {dt!r:.40} (object arrays would unpickle "
                                        f"arbitrary objects){self.where()}")
            if isinstance(raw, str):
                raw = raw.encode("latin1")
            arr = _array_from_bytes(raw, dt, shape, bool(fortran), self)
            self.replace_memo(inst, arr)
            return arr
        if isinstance(inst, dict):
            # OrderedDict of a state dict carries `_metadata` as an attribute; EasyDict attributes are its items.
            slots = None
            if isinstance(state, tuple) and len(state) == 2:
                state, slots = state
            for part in (state, slots):
                if part is None:
                    continue
                if not isinstance(part, Mapping):
                    raise CorruptFileError(f"state {type(part).__name__} for a dict{self.where()}")
                if type(inst) is collections.OrderedDict:
                    for k, v in part.items():
                        if not isinstance(k, str):
                            raise CorruptFileError(f"non-string attribute name {k!r:.40}{self.where()}")
                        inst.__dict__[k] = v
                else:
                    inst.update(part)
            return inst
        raise UnsafePickleError(f"refusing BUILD (__setstate__) on {type(inst).__name__}{self.where()}")

    def newobj(self, cls, args, kwargs=None):
        if kwargs:
            raise UnsafePickleError(f"refusing keyword arguments to {getattr(cls, 'qualname', cls)!r:.60}"
                                    f"{self.where()}")
        if isinstance(cls, _Global) and cls.call in (_h_easydict, _h_ordered_dict, _h_set, _h_namespace):
            return self.call(cls, ())  # cls.__new__(cls): an empty container, filled by SETITEMS/BUILD
        if isinstance(cls, _Global):
            raise UnsafePickleError(f"refusing to instantiate {cls.qualname}{self.where()}")
        raise UnsafePickleError(f"refusing to instantiate {type(cls).__name__}{self.where()}")

    def persistent(self, pid):
        if self.persistent_load is None:
            raise UnsafePickleError(f"refusing persistent id {pid!r:.80}: this stream has no storage table"
                                    f"{self.where()}")
        return self.persistent_load(pid, self)

    # -- main loop ---------------------------------------------------------------------------------------------
    def run(self) -> tuple[Any, int]:
        dispatch = _DISPATCH
        buf = self.buf
        n = len(buf)
        while True:
            if self.pos >= n:
                raise TruncatedFileError(f"pickle ends at byte {n} without a STOP opcode{self._where} "
                                         f"(truncated file?)")
            self.op_pos = self.pos
            code = buf[self.pos]
            self.pos += 1
            if code == 0x2E:  # STOP
                return self.pop(), self.pos
            handler = dispatch.get(code)
            if handler is None:
                raise CorruptFileError(f"unknown pickle opcode 0x{code:02x}{self.where()} (not a pickle, or "
                                       f"corrupt)")
            try:
                handler(self)
            except TorchFileError:
                raise
            except (TypeError, ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError,
                    struct.error, RecursionError) as e:
                raise CorruptFileError(f"malformed pickle: {type(e).__name__}: {e}{self.where()}") from None


def _decode_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin1")


def _quoted(vm: _VM) -> str:
    line = vm.readline().rstrip(b"\r")
    if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):
        return _decode_str(codecs.escape_decode(line[1:-1])[0])
    raise CorruptFileError(f"STRING argument is not quoted{vm.where()}")


def _int_line(vm: _VM):
    line = vm.readline()
    if line == b"00":
        return False
    if line == b"01":
        return True
    if len(line) > 64:
        raise CorruptFileError(f"implausibly long INT{vm.where()}")
    return int(line)


def _long_bytes(vm: _VM, n: int) -> int:
    if n > _MAX_LONG_BYTES:
        raise CorruptFileError(f"integer of {n} bytes{vm.where()}")
    return int.from_bytes(vm.read(n), "little", signed=True)


def _setitems(vm: _VM, target, items: list) -> None:
    if not isinstance(target, dict):
        raise UnsafePickleError(f"refusing SETITEM on {type(target).__name__}{vm.where()}")
    if len(items) % 2:
        raise CorruptFileError(f"odd number of items for SETITEMS{vm.where()}")
    for i in range(0, len(items), 2):
        target[items[i]] = items[i + 1]


def _appends(vm: _VM, target, items: list) -> None:
    if not isinstance(target, list):
        raise UnsafePickleError(f"refusing APPEND on {type(target).__name__}{vm.where()}")
    target.extend(items)


def _additems(vm: _VM, target, items: list) -> None:
    if not isinstance(target, set):
        raise UnsafePickleError(f"refusing ADDITEMS on {type(target).__name__}{vm.where()}")
    target.update(items)


def _put(vm: _VM, idx: int) -> None:
    vm.memo[idx] = vm.top()


def _get(vm: _VM, idx: int) -> None:
    if idx not in vm.memo:
        raise CorruptFileError(f"memo entry {idx} read before it was written{vm.where()}")
    vm.stack.append(vm.memo[idx])


def _global_line(vm: _VM) -> None:
    module = vm.readline().decode("utf-8")
    name = vm.readline().decode("utf-8")
    vm.stack.append(vm.find_global(module, name))


def _stack_global(vm: _VM) -> None:
    name = vm.pop()
    module = vm.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise CorruptFileError(f"STACK_GLOBAL with non-string module/name{vm.where()}")
    vm.stack.append(vm.find_global(module, name))


def _inst(vm: _VM) -> None:
    module = vm.readline().decode("utf-8")
    name = vm.readline().decode("utf-8")
    cls = vm.find_global(module, name)
    args = tuple(vm.pop_mark())
    vm.stack.append(vm.call(cls, args))


def _obj(vm: _VM) -> None:
    args = vm.pop_mark()
    if not args:
        raise CorruptFileError(f"OBJ without a class{vm.where()}")
    vm.stack.append(vm.call(args[0], tuple(args[1:])))


def _reduce(vm: _VM) -> None:
    args = vm.pop()
    func = vm.pop()
    vm.stack.append(vm.call(func, args))


def _build(vm: _VM) -> None:
    state = vm.pop()
    inst = vm.pop()
    vm.stack.append(vm.build(inst, state))


def _ext(vm: _VM, n: int) -> None:
    code = int.from_bytes(vm.read(n), "little")
    raise UnsafePickleError(f"refusing extension-registry global (EXT code {code}){vm.where()}")


def _buffer(vm: _VM) -> None:
    raise UnsupportedFormatError(f"out-of-band pickle buffers (protocol 5 NEXT_BUFFER){vm.where()}")


def _proto(vm: _VM) -> None:
    p = vm.read(1)[0]
    if p > 5:
        raise CorruptFileError(f"unsupported pickle protocol {p}{vm.where()}")


def _u(fmt: str) -> Callable[[_VM], Any]:
    size = struct.calcsize(fmt)
    return lambda vm: struct.unpack(fmt, vm.read(size))[0]


_u1, _u2, _u4, _i4, _u8 = _u("<B"), _u("<H"), _u("<I"), _u("<i"), _u("<Q")


def _tuple_n(n: int) -> Callable[[_VM], None]:
    def op(vm: _VM) -> None:
        if len(vm.stack) < n:
            raise CorruptFileError(f"pickle stack underflow{vm.where()}")
        items = tuple(vm.stack[len(vm.stack) - n:]) if n else ()
        del vm.stack[len(vm.stack) - n:]
        vm.stack.append(items)
    return op


def _push(vm: _VM, value) -> None:
    """Push after the argument expression ran (which may have switched `vm.stack` by popping a MARK)."""
    vm.stack.append(value)


def _frozenset(vm: _VM) -> None:
    items = vm.pop_mark()
    vm.stack.append(frozenset(items))


def _pop(vm: _VM) -> None:
    if vm.stack:
        vm.stack.pop()
    else:
        vm.pop_mark()


def _mark(vm: _VM) -> None:
    vm.metastack.append(vm.stack)
    vm.stack = []


def _dict(vm: _VM) -> None:
    items = vm.pop_mark()
    d: dict = {}
    _setitems(vm, d, items)
    vm.stack.append(d)


_DISPATCH: dict[int, Callable[[_VM], None]] = {
    ord("("): _mark,
    ord("0"): _pop,
    ord("1"): lambda vm: vm.pop_mark() and None,
    ord("2"): lambda vm: vm.stack.append(vm.top()),
    ord("F"): lambda vm: vm.stack.append(float(vm.readline())),
    ord("I"): lambda vm: vm.stack.append(_int_line(vm)),
    ord("J"): lambda vm: vm.stack.append(_i4(vm)),
    ord("K"): lambda vm: vm.stack.append(_u1(vm)),
    ord("L"): lambda vm: vm.stack.append(int(vm.readline().rstrip(b"L")[:64])),
    ord("M"): lambda vm: vm.stack.append(_u2(vm)),
    ord("N"): lambda vm: vm.stack.append(None),
    ord("P"): lambda vm: vm.stack.append(vm.persistent(vm.readline().decode("ascii"))),
    ord("Q"): lambda vm: vm.stack.append(vm.persistent(vm.pop())),
    ord("R"): _reduce,
    ord("S"): lambda vm: vm.stack.append(_quoted(vm)),
    ord("T"): lambda vm: vm.stack.append(_decode_str(vm.read(_i4(vm)))),
    ord("U"): lambda vm: vm.stack.append(_decode_str(vm.read(_u1(vm)))),
    ord("V"): lambda vm: vm.stack.append(vm.readline().decode("raw-unicode-escape")),
    ord("X"): lambda vm: vm.stack.append(vm.read(_u4(vm)).decode("utf-8", "surrogatepass")),
    ord("a"): lambda vm: (lambda v: _appends(vm, vm.top(), [v]))(vm.pop()),
    ord("b"): _build,
    ord("c"): _global_line,
    ord("d"): _dict,
    ord("}"): lambda vm: vm.stack.append({}),
    ord("e"): lambda vm: (lambda items: _appends(vm, vm.top(), items))(vm.pop_mark()),
    ord("g"): lambda vm: _get(vm, int(vm.readline())),
    ord("h"): lambda vm: _get(vm, _u1(vm)),
    ord("i"): _inst,
    ord("j"): lambda vm: _get(vm, _u4(vm)),
    ord("l"): lambda vm: _push(vm, list(vm.pop_mark())),
    ord("]"): lambda vm: vm.stack.append([]),
    ord("o"): _obj,
    ord("p"): lambda vm: _put(vm, int(vm.readline())),
    ord("q"): lambda vm: _put(vm, _u1(vm)),
    ord("r"): lambda vm: _put(vm, _u4(vm)),
    ord("s"): lambda vm: (lambda v, k: _setitems(vm, vm.top(), [k, v]))(vm.pop(), vm.pop()),
    ord("t"): lambda vm: _push(vm, tuple(vm.pop_mark())),
    ord(")"): lambda vm: vm.stack.append(()),
    ord("u"): lambda vm: (lambda items: _setitems(vm, vm.top(), items))(vm.pop_mark()),
    ord("G"): lambda vm: vm.stack.append(struct.unpack(">d", vm.read(8))[0]),
    0x80: _proto,
    0x81: lambda vm: (lambda args, cls: vm.stack.append(vm.newobj(cls, args)))(vm.pop(), vm.pop()),
    0x82: lambda vm: _ext(vm, 1),
    0x83: lambda vm: _ext(vm, 2),
    0x84: lambda vm: _ext(vm, 4),
    0x85: _tuple_n(1),
    0x86: _tuple_n(2),
    0x87: _tuple_n(3),
    0x88: lambda vm: vm.stack.append(True),
    0x89: lambda vm: vm.stack.append(False),
    0x8A: lambda vm: vm.stack.append(_long_bytes(vm, _u1(vm))),
    0x8B: lambda vm: vm.stack.append(_long_bytes(vm, _i4(vm))),
    ord("B"): lambda vm: vm.stack.append(vm.read(_u4(vm))),
    ord("C"): lambda vm: vm.stack.append(vm.read(_u1(vm))),
    0x8C: lambda vm: vm.stack.append(vm.read(_u1(vm)).decode("utf-8", "surrogatepass")),
    0x8D: lambda vm: vm.stack.append(vm.read(_u8(vm)).decode("utf-8", "surrogatepass")),
    0x8E: lambda vm: vm.stack.append(vm.read(_u8(vm))),
    0x8F: lambda vm: vm.stack.append(set()),
    0x90: lambda vm: (lambda items: _additems(vm, vm.top(), items))(vm.pop_mark()),
    0x91: _frozenset,
    0x92: lambda vm: (lambda kw, args, cls: vm.stack.append(vm.newobj(cls, args, kw)))(vm.pop(), vm.pop(), vm.pop()),
    0x93: _stack_global,
    0x94: lambda vm: _put(vm, len(vm.memo)),
    0x95: lambda vm: _u8(vm) and None,   # FRAME: a length hint only
    0x96: lambda vm: vm.stack.append(bytearray(vm.read(_u8(vm)))),
    0x97: _buffer,
    0x98: _buffer,
}


# --------------------------------------------------------------------------------------------------------------
# Persistent ids (storages).

def _storage_type(st, vm: _VM) -> np.dtype:
    if not (isinstance(st, _Global) and st.storage_dtype is not None):
        raise UnsafePickleError(f"persistent id names storage type {st!r:.60}, not a known torch storage class"
                                f"{vm.where()}")
    return _np_dtype(st.storage_dtype)


def _check_numel(numel, vm: _VM) -> int:
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise CorruptFileError(f"storage element count {numel!r:.40}{vm.where()}")
    return numel


def _zip_persistent_loader(zf: zipfile.ZipFile, prefix: str, archive: str, swap: bool):
    cache: dict[str, _Storage] = {}
    names = set(zf.namelist())

    def load(pid, vm: _VM):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"refusing persistent id {pid!r:.80} (expected ('storage', type, key, location,"
                                    f" numel)){vm.where()}")
        _, st, key, location, numel = pid
        dtype = _storage_type(st, vm)
        numel = _check_numel(numel, vm)
        key = str(key)
        if key in cache:
            return cache[key]
        entry = f"{prefix}/data/{key}"
        if entry not in names:
            raise MissingStorageError(f"storage {key!r} ({numel} x {dtype}) is missing from {archive}: no entry "
                                      f"{entry!r}{vm.where()}")
        need = numel * dtype.itemsize
        size = zf.getinfo(entry).file_size
        if size > need + 4096:   # never inflate more than the storage can hold (compressed-entry bombs)
            raise CorruptFileError(f"storage {key!r} in {archive} holds {size} bytes, {numel} x {dtype} need only "
                                   f"{need}{vm.where()}")
        try:
            raw = zf.read(entry)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise TruncatedFileError(f"cannot read {entry!r} from {archive} ({e}); truncated or corrupt file?") \
                from None
        if len(raw) < need:
            raise TruncatedFileError(f"storage {key!r} in {archive} has {len(raw)} bytes, {numel} x {dtype} need "
                                     f"{need}{vm.where()}")
        arr = np.frombuffer(raw, dtype=dtype, count=numel)
        if swap:
            arr = arr.byteswap()
        cache[key] = _Storage(key, dtype, numel, str(location), arr)
        return cache[key]

    return load


def _legacy_persistent_loader(table: dict[str, _Storage]):
    def load(pid, vm: _VM):
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise UnsafePickleError(f"refusing a whole pickled torch.nn module (persistent id 'module'); save "
                                    f"model.state_dict() instead{vm.where()}")
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise UnsafePickleError(f"refusing persistent id {pid!r:.80} (expected ('storage', type, key, location,"
                                    f" numel, view)){vm.where()}")
        _, st, key, location, numel, view = pid
        dtype = _storage_type(st, vm)
        numel = _check_numel(numel, vm)
        key = str(key)
        root = table.get(key)
        if root is None:
            root = table[key] = _Storage(key, dtype, numel, str(location))
        elif root.dtype != dtype or root.numel != numel:
            raise CorruptFileError(f"storage {key!r} declared twice with different type/size{vm.where()}")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CorruptFileError(f"storage view metadata {view!r:.60}{vm.where()}")
        view_key, offset, size = view
        offset, size = _check_numel(offset, vm), _check_numel(size, vm)
        if offset + size > numel:
            raise CorruptFileError(f"storage view {view_key!r} [{offset}:{offset + size}] exceeds storage {key!r} of "
                                   f"{numel} elements{vm.where()}")
        vkey = "view:" + str(view_key)
        if vkey not in table:
            table[vkey] = _Storage(str(view_key), dtype, size, str(location), base=root, offset=offset)
        return table[vkey]

    return load


# --------------------------------------------------------------------------------------------------------------
# Container formats.

def _run(buf: bytes, start: int, **kw) -> tuple[Any, int]:
    return _VM(buf, start, **kw).run()


def _pickle_end(buf: bytes, start: int, where: str) -> int:
    """End offset of the pickle starting at `start`, found by parsing opcodes only (nothing is built)."""
    f = io.BytesIO(buf)  # shares the bytes, no copy
    f.seek(start)
    try:
        for op, _, pos in pickletools.genops(f):
            if op.name == "STOP":
                return pos + 1
    except ValueError as e:
        raise TruncatedFileError(f"legacy main pickle starting at byte {start} is unreadable: {e}{where}") from None
    raise TruncatedFileError(f"legacy main pickle starting at byte {start} has no STOP{where}")


def _load_legacy(buf: bytes, *, depth: int = 0, where: str = "") -> Any:
    """A legacy (non-zip) `torch.save` stream."""
    magic, pos = _run(buf, 0, depth=depth, where=where)
    if magic != LEGACY_MAGIC:
        raise BadMagicError(f"bad magic number {magic!r:.40} (expected 0x{LEGACY_MAGIC:x}): not a torch.save file, "
                            f"or corrupt{where}")
    version, pos = _run(buf, pos, depth=depth, where=where)
    if version != LEGACY_PROTOCOL:
        raise BadMagicError(f"unsupported legacy torch.save protocol version {version!r:.40} (expected "
                            f"{LEGACY_PROTOCOL}){where}")
    sys_info, pos = _run(buf, pos, depth=depth, where=where)
    if not isinstance(sys_info, Mapping):
        raise CorruptFileError(f"legacy sys-info is {type(sys_info).__name__}, expected a dict{where}")
    if sys_info.get("little_endian", True) is not True:
        raise UnsupportedFormatError(f"big-endian legacy torch.save file{where}")
    table: dict[str, _Storage] = {}
    main_start = pos
    pos = _pickle_end(buf, main_start, where)
    keys, pos = _run(buf, pos, depth=depth, where=where)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise CorruptFileError(f"legacy storage key list is {type(keys).__name__}{where}")
    # Storage declarations live in the main pickle; read it now (tensors stay pending until the data is read).
    obj, _ = _run(buf, main_start, persistent_load=_legacy_persistent_loader(table), depth=depth, where=where)
    for key in keys:
        st = table.get(key)
        if st is None:
            raise CorruptFileError(f"legacy storage key {key!r} is not declared in the main pickle{where}")
        if pos + 8 > len(buf):
            raise TruncatedFileError(f"data ends at byte {len(buf)} before the size of storage {key!r}{where}")
        (count,) = struct.unpack("<q", buf[pos:pos + 8])
        pos += 8
        if count != st.numel:
            raise CorruptFileError(f"storage {key!r} holds {count} elements, the pickle declared {st.numel}{where}")
        nbytes = count * st.dtype.itemsize
        if pos + nbytes > len(buf):
            raise TruncatedFileError(f"storage {key!r} needs {nbytes} bytes from byte {pos}, data ends at byte "
                                     f"{len(buf)}{where} (truncated file?)")
        st.array = np.frombuffer(buf, dtype=st.dtype, count=count, offset=pos)
        pos += nbytes
    missing = [s.key for k, s in table.items() if not k.startswith("view:") and s.array is None]
    if missing:
        raise MissingStorageError(f"storages {missing} are declared but absent from the data section{where}")
    return obj


def _zip_prefix(zf: zipfile.ZipFile, archive: str) -> str:
    tops = [n.split("/")[0] for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(tops) != 1:
        raise CorruptFileError(f"{archive}: expected exactly one '<folder>/data.pkl' entry, found {len(tops)} "
                               f"(not a torch.save zip checkpoint?)")
    return tops[0]


def _load_zip(data: bytes, archive: str) -> Any:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise TruncatedFileError(f"{archive}: unreadable zip archive ({e}); truncated or corrupt file?") from None
    with zf:
        prefix = _zip_prefix(zf, archive)
        swap = False
        if f"{prefix}/byteorder" in zf.namelist():
            order = zf.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CorruptFileError(f"{archive}: byteorder record says {order!r}")
            swap = order == "big"
        try:
            pkl = zf.read(f"{prefix}/data.pkl")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise TruncatedFileError(f"{archive}: cannot read {prefix}/data.pkl ({e})") from None
        where = f" in {prefix}/data.pkl of {archive}"
        obj, _ = _run(pkl, 0, persistent_load=_zip_persistent_loader(zf, prefix, archive, swap), where=where)
    return _resolve(obj)


def _resolve(obj: Any) -> Any:
    """Replace pending tensors and bare storages in the tree by arrays (in place for containers)."""
    seen: dict[int, Any] = {}

    def walk(x):
        if isinstance(x, (str, bytes, int, float, np.ndarray, np.generic, np.dtype)) or x is None:
            return x
        key = id(x)
        if key in seen:
            return seen[key]
        if isinstance(x, _PendingTensor):
            seen[key] = x.materialise()
            return seen[key]
        if isinstance(x, _Storage):
            seen[key] = np.array(x.data(""), copy=True)
            return seen[key]
        if isinstance(x, dict):
            seen[key] = x
            for k in list(x.keys()):
                x[k] = walk(x[k])
            if type(x) is collections.OrderedDict and x.__dict__:
                for k in list(x.__dict__):
                    x.__dict__[k] = walk(x.__dict__[k])
            return x
        if isinstance(x, list):
            seen[key] = x
            for i, v in enumerate(x):
                x[i] = walk(v)
            return x
        if isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
            seen[key] = out
            return out
        if isinstance(x, PersistentObject):
            seen[key] = x
            walk(x.state)
            return x
        if isinstance(x, _ArrayStub):
            raise CorruptFileError("numpy array reconstructed without its BUILD state")
        return x

    try:
        return walk(obj)
    except RecursionError:
        raise CorruptFileError("object tree nested too deeply") from None


_ZIP_MAGIC = b"PK\x03\x04"


def loads(data: bytes, name: str = "<bytes>") -> Any:
    """`load` for bytes already in memory."""
    data = bytes(data)
    if not data:
        raise TruncatedFileError(f"{name}: empty file")
    if data[:4] == _ZIP_MAGIC or data[:4] == b"PK\x05\x06":
        return _load_zip(data, name)
    if data[0] not in _DISPATCH:
        raise CorruptFileError(f"{name}: neither a zip archive nor a pickle (starts with {data[:8]!r}); a tar-format "
                               f"torch file from 2017, or not a PyTorch file at all?")
    where = f" of {name}"
    first, end = _run(data, 0, where=where)
    if isinstance(first, int) and not isinstance(first, bool) and end < len(data):
        return _resolve(_load_legacy(data, where=where))
    return _resolve(first)


def load(path_or_fileobj: str | os.PathLike | BinaryIO) -> Any:
    """Read a PyTorch zip checkpoint, a legacy `torch.save` file or a plain pickle (e.g. a stylegan2-ada network
    pickle) into plain Python + numpy objects, without torch and without running anything from the file.

    Raises `UnsafePickleError` (a global or construct outside the allow-list), `TruncatedFileError`,
    `MissingStorageError`, `BadMagicError`, `CorruptFileError`, `UnsupportedFormatError` — all `TorchFileError`,
    a `ValueError`."""
    if hasattr(path_or_fileobj, "read"):
        data = path_or_fileobj.read()
        name = str(getattr(path_or_fileobj, "name", "<file object>"))
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"{name}: file object must be opened in binary mode")
    else:
        name = os.fspath(path_or_fileobj)
        with open(name, "rb") as f:
            data = f.read()
    return loads(data, name)
