import pytest

from lace_jax.config import apply_overrides, parse_value


def test_parse_value():
    assert parse_value("1e-3") == 1e-3
    assert parse_value("True") is True
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("dopri5") == "dopri5"


def test_overrides_nested_and_errors():
    cfg = {"a": 1, "solver": {"rtol": 1e-3, "name": "dopri5"}}
    out = apply_overrides(cfg, ["solver.rtol=1e-5", "a=3"])
    assert out == {"a": 3, "solver": {"rtol": 1e-5, "name": "dopri5"}}
    assert cfg["solver"]["rtol"] == 1e-3  # input untouched
    with pytest.raises(KeyError, match="solver.atol"):
        apply_overrides(cfg, ["solver.atol=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["nonsense"])
