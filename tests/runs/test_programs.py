"""Stored traced chunk programs (`lace_jax.runs._programs`): keyed safely, equal to tracing, never traced twice."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as en
from lace_jax.runs import _programs, chunks

KEY = {"body": "tests.runs.test_programs.counted_per_sample"}
TRACES = {"n": 0}


def counted_per_sample(params, key, index):
    """z = scale·N(0, I) + shift; counts its traces (Python runs only while JAX traces)."""
    TRACES["n"] += 1
    z = jax.random.normal(key, (3,)) * params["scale"] + params["shift"]
    return z, jnp.all(jnp.isfinite(z)), {"nfe": jnp.int32(5) + index % 2}


def _params(shift=0.25):
    return {"scale": jnp.float32(1.5), "shift": jnp.full((3,), shift, jnp.float32)}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(_programs, "store_dir", lambda: tmp_path / "programs")
    return tmp_path / "programs"


def _user_fn(z):
    return jnp.sum(z)


def test_describe_is_stable_and_refuses_identity():
    a = jax.tree_util.Partial(en.and_, {"w": jnp.ones(3)})
    b = jax.tree_util.Partial(en.and_, {"w": jnp.zeros(3)})           # other values, same structure
    assert _programs.describe(a) == _programs.describe(b) is not None
    assert _programs.describe(a) != _programs.describe(jax.tree_util.Partial(en.or_, {"w": jnp.ones(3)}))
    assert _programs.describe(a) != _programs.describe(jax.tree_util.Partial(en.and_, {"v": jnp.ones(3)}))
    assert _programs.describe(jax.tree_util.Partial(functools.partial(en.and_, 2), 1.0)) is not None
    # known only by identity: a lambda, a function outside lace_jax and the versioned libraries
    assert _programs.describe(jax.tree_util.Partial(lambda z: z, 1.0)) is None
    assert _programs.describe(jax.tree_util.Partial(_user_fn, 1.0)) is None
    assert _programs.describe(jax.tree_util.Partial(functools.partial(_user_fn), 1.0)) is None


def test_key_names_every_input():
    p = _params()
    args = (np.uint32(0), np.arange(4, dtype=np.int32))
    k = _programs.key(KEY, p, args, 1)
    assert k == _programs.key(KEY, _params(shift=9.0), args, 1)                         # values are inputs
    assert k != _programs.key({"body": "other"}, p, args, 1)
    assert k != _programs.key(KEY, p, (np.uint32(0), np.arange(8, dtype=np.int32)), 1)  # chunk size
    assert k != _programs.key(KEY, {**p, "shift": jnp.float32(0.0)}, args, 1)            # a shape
    assert k != _programs.key(KEY, p, args, 2)                                           # devices
    with jax.default_matmul_precision("bfloat16"):                                     # a JAX switch
        assert k != _programs.key(KEY, p, args, 1)
    assert _programs.key({"f": lambda: 0}, p, args, 1) is None


def test_a_stored_program_equals_the_traced_one_and_is_not_traced_again(store):
    kw = dict(num_samples=10, chunk_size=4, seed=3)
    ref = chunks.generate(counted_per_sample, _params(), **kw)            # no key: traced as before
    TRACES["n"] = 0
    first = chunks.generate(counted_per_sample, _params(), program_key=KEY, cache={}, **kw)
    files = sorted(store.glob("*.jaxexport"))
    assert TRACES["n"] == 1 and len(files) == 1
    second = chunks.generate(counted_per_sample, _params(shift=-1.0), program_key=KEY, cache={}, **kw)
    assert TRACES["n"] == 1                                                 # read from the store, not traced
    for got in (first, second):
        np.testing.assert_array_equal(got.success, ref.success)
        np.testing.assert_array_equal(got.stats["nfe"], ref.stats["nfe"])
    np.testing.assert_array_equal(first.z, ref.z)
    np.testing.assert_allclose(second.z, ref.z - 1.25, rtol=0, atol=1e-6)
    # a damaged file is traced again and replaced
    files[0].write_bytes(b"not a program")
    again = chunks.generate(counted_per_sample, _params(), program_key=KEY, cache={}, **kw)
    assert TRACES["n"] == 2 and files[0].stat().st_size > 1000
    np.testing.assert_array_equal(again.z, ref.z)


def test_no_store_without_a_key_or_a_describable_tree(store):
    TRACES["n"] = 0
    kw = dict(num_samples=4, chunk_size=4)
    chunks.generate(counted_per_sample, _params(), cache={}, **kw)
    params = {"p": _params(), "f": jax.tree_util.Partial(_user_fn)}
    chunks.generate(lambda p, k, i: counted_per_sample(p["p"], k, i), params, program_key=KEY, cache={}, **kw)
    assert TRACES["n"] == 2 and not store.exists()
