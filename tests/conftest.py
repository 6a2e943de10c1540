"""Shared pytest fixtures: where the reference fixtures live."""
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist runs several workers (setup.cfg): on a GPU each would otherwise reserve most of its memory
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def fixtures_dir() -> Path:
    """`$LACE_JAX_FIXTURES`, else `../shared/fixtures` beside the checkout."""
    env = os.environ.get("LACE_JAX_FIXTURES")
    return Path(env) if env else REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache_in_tmp(tmp_path_factory):
    """The CLIs keep compiled programs in $LACE_JAX_CACHE_DIR (default: the user's cache folder): every CLI the
    suite starts shares one temporary cache instead."""
    old = os.environ.get("LACE_JAX_CACHE_DIR")
    os.environ["LACE_JAX_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))
    yield
    if old is None:
        os.environ.pop("LACE_JAX_CACHE_DIR", None)
    else:
        os.environ["LACE_JAX_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def fixtures() -> Path:
    path = fixtures_dir()
    if not path.is_dir():
        raise FileNotFoundError(f"reference fixtures not found at {path} (set LACE_JAX_FIXTURES)")
    return path


@pytest.fixture(scope="session")
def lace_vectors(fixtures):
    return dict(np.load(fixtures / "lace" / "vectors.npz"))


@pytest.fixture(scope="session")
def sampler_refs(fixtures):
    return dict(np.load(fixtures / "lace" / "sampler_refs.npz"))


@pytest.fixture(scope="session")
def fid_vectors(fixtures):
    """pytorch-fid's reference vectors for the FID Inception (`fid_inception/vectors.npz`)."""
    return dict(np.load(fixtures / "fid_inception" / "vectors.npz"))


@pytest.fixture(scope="session")
def fid_variables(fixtures):
    """The FID Inception's Flax variables with the fixture's recipe weights (built once per session)."""
    from ports import inception
    from tests.fid_helpers import recipe_state_dict

    return inception.convert(recipe_state_dict(fixtures))
