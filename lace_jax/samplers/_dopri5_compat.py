"""A `lax.while_loop` Dopri5 that follows torchdiffeq 0.2.5's `dopri5` controller step for step, so that LACE's
reference ODE runs are reproduced with the same number of function evaluations (NFE).

What it mimics (torchdiffeq `rk_common.py`, `misc.py`, `interp.py`, `odeint.py`):
* decreasing time is solved in s = −t with the vector field negated (`_ReverseFunc`);
* times live in float64, the state and every Runge–Kutta stage in float32; each stage's time is formed in
  float32 (`t0 + α·dt` with t0, dt cast to float32) and the two α = 1 stages use the float32 value just below
  t1 (`Perturb.PREV`, i.e. `nextafter(t1, −inf)`);
* the error norm is the RMS over the WHOLE state (all samples jointly): `ratio = rms(err/(atol + rtol·max(|y0|,|y1|)))`
  in float32, a step is accepted iff ratio ≤ 1, and the next step is `dt·min(10, max(0.9·ratio^(−1/5), f))`
  with f = 0.2, or 1 after an accepted step (computed in float64);
* the initial step is Hairer–Nørsett–Wanner's (2 evaluations), FSAL thereafter (6 evaluations per attempt);
* no step is clipped to the end time: once a step passes it, z(t_end) is read from that step's quartic dense
  output through y0, y1, the Dormand–Prince midpoint, f0, f1.

The network is traced twice: the initial step's two evaluations are one loop of two, and a step's six stages
one loop over the tableau's rows (stages kept in a [7, ...] buffer, zero-padded rows, sums in torch's order), so
the compiled program holds two copies of the vector field whatever the batch — written out, each evaluation
site was a copy of its own (eight), and XLA optimised (on a GPU, autotuned) each again.

float64 times: JAX runs float32 unless x64 is on, so the solver enables x64 only while it builds its own loop
(`jax.enable_x64(True)` is a trace-time switch; the compiled program simply carries float64 scalars) and turns it
off again around every call of the vector field, so user energies are traced exactly as in float32 mode.
Everything returned is float32/int32.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# Dormand–Prince 5(4) tableau (torchdiffeq's `_DORMAND_PRINCE_SHAMPINE_TABLEAU`), float64 → float32 as torch does.
_ALPHA = [1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_BETA = [
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_C_ERROR = [35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
            -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1.0 / 60.0]
_C_MID = [6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
          187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2]

RESULT_SUCCESS = 0
RESULT_MAX_STEPS = 1        # same code as diffrax.RESULTS.max_steps_reached
RESULT_NONFINITE = 100      # the state or the error became NaN/inf


class CompatResult(NamedTuple):
    z: jax.Array            # [...] state at t_end (float32), whatever happened (the caller masks failures)
    nfe: jax.Array          # int32
    num_accepted: jax.Array  # int32
    num_rejected: jax.Array  # int32
    result: jax.Array       # int32: RESULT_*
    t_evals: jax.Array      # [2 + 6·max_steps] float32 times of every evaluation (original direction), NaN-padded


def _f32(x) -> np.float32:
    return np.float32(x)


def _rms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.mean(jnp.square(jnp.abs(x))))


# The tableau as arrays indexed by stage, for the stage loop: row i of _BETA_ROWS holds stage i's β padded with
# zeros to 7 columns (a zero column adds k·(0·dt) = ±0 to the sum, which leaves every partial sum as it was).
_ALPHA_ROWS = np.asarray(_ALPHA, np.float32)
_AT_END = np.asarray([a == 1.0 for a in _ALPHA])
_BETA_ROWS = np.zeros((len(_BETA), len(_BETA) + 1), np.float32)
for _i, _row in enumerate(_BETA):
    _BETA_ROWS[_i, :len(_row)] = np.asarray(_row, np.float64).astype(np.float32)
_C_ERROR32 = np.asarray(_C_ERROR, np.float64).astype(np.float32)
_C_MID32 = np.asarray(_C_MID, np.float64).astype(np.float32)


def _wsum(ks, coeffs, dt32):
    """Σ_j k_j·(c_j·dt) in float32, in order (torch: `sum(k * (c * dt), -1)`); zero coefficients contribute 0.
    `ks`: the stages (a list, or stacked in one array); `coeffs`: a float32 row (numpy, or traced)."""
    out = None
    for j in range(len(coeffs)):
        term = ks[j] * (coeffs[j] * dt32)
        out = term if out is None else out + term
    return out


def dopri5_torchdiffeq(func: Callable[[jax.Array, jax.Array, Any], jax.Array], y0: jax.Array, t0: float,
                       t1: float, args: Any, *, rtol: float, atol: float, max_steps: int = 4096) -> CompatResult:
    """Solve dy/dt = func(t, y, args) from t0 to t1 (either direction) like torchdiffeq 0.2.5 `odeint(...,
    method='dopri5')` with `t = tensor([t0, t1], float32)`. `func` receives t as a float32 scalar (original
    direction) and y float32 with y0's shape; `args` is a pytree passed through (energies, weights). `func` is
    traced twice (see the module docstring)."""
    t_span = np.asarray([t0, t1], np.float32)
    if t_span[0] == t_span[1]:
        raise ValueError("dopri5_torchdiffeq: t0 and t1 must differ")
    reverse = bool(t_span[1] < t_span[0])
    sign = -1.0 if reverse else 1.0
    s_start = float(sign * t_span[0])   # exact float64 image of the float32 times
    s_end = float(sign * t_span[1])
    n_buf = 2 + 6 * int(max_steps)
    y0 = jnp.asarray(y0, jnp.float32)
    n_stages = len(_ALPHA)

    with jax.enable_x64(True):
        def f(s32, y, args):
            # `_PerturbFunc` hands the solver-frame float32 time over; `_ReverseFunc` flips it and the output.
            t = jnp.asarray(sign, jnp.float32) * s32
            with jax.enable_x64(False):
                out = func(t, y, args)
            return jnp.asarray(sign, jnp.float32) * out.astype(jnp.float32), t

        rtol32, atol32 = jnp.asarray(rtol, jnp.float32), jnp.asarray(atol, jnp.float32)  # may be traced
        t_evals = jnp.full((n_buf,), jnp.nan, jnp.float32)

        # ---- initial step (Hairer–Nørsett–Wanner), torchdiffeq `_select_initial_step`: f(s0, y0), then
        # f(s0 + h0, y0 + h0·f0) with h0 from the first evaluation; one loop of two so `func` is traced once here
        s0 = jnp.asarray(s_start, jnp.float64)
        scale = atol32 + jnp.abs(y0) * rtol32
        d0 = _rms(y0 / scale)

        def h0_of(f0):
            d1 = _rms(f0 / scale)
            small = (d0 < 1e-5) | (d1 < 1e-5)
            h0 = jnp.where(small, _f32(1e-6), _f32(0.01) * d0 / jnp.where(small, _f32(1.0), d1))
            return jnp.abs(h0), d1

        def init_body(i, c):
            f0, _, t_evals = c
            h0, _ = h0_of(f0)
            first = i == 0
            s_in = jnp.where(first, s0.astype(jnp.float32), (s0 + h0.astype(jnp.float64)).astype(jnp.float32))
            y_in = jnp.where(first, y0, y0 + h0 * f0)
            fi, te = f(s_in, y_in, args)
            return jnp.where(first, fi, f0), fi, t_evals.at[i].set(te)

        zeros = jnp.zeros_like(y0)
        f0, f1, t_evals = jax.lax.fori_loop(0, 2, init_body, (zeros, zeros, t_evals))
        h0, d1 = h0_of(f0)
        d2 = jnp.abs(_rms((f1 - f0) / scale) / h0)
        tiny = (d1 <= 1e-15) & (d2 <= 1e-15)
        h1 = jnp.where(tiny, jnp.maximum(_f32(1e-6), h0 * _f32(1e-3)),
                       (_f32(0.01) / jnp.where(tiny, _f32(1.0), jnp.maximum(d1, d2))) ** _f32(1.0 / 5.0))
        dt_first = jnp.minimum(_f32(100.0) * h0, jnp.abs(h1)).astype(jnp.float64)

        s_end64 = jnp.asarray(s_end, jnp.float64)
        init = dict(y=y0, f=f0, t_prev=s0, t=s0, dt=dt_first, coeffs=(y0, zeros, zeros, zeros, zeros),
                    steps=jnp.int32(0), acc=jnp.int32(0), rej=jnp.int32(0), nfe=jnp.int32(2), t_evals=t_evals,
                    bad=jnp.asarray(False))
        alpha_rows, at_end, beta_rows = jnp.asarray(_ALPHA_ROWS), jnp.asarray(_AT_END), jnp.asarray(_BETA_ROWS)

        def cond(st):
            return (s_end64 > st["t"]) & (st["steps"] < max_steps) & ~st["bad"]

        def body(st):
            y0, f0, t0, dt = st["y"], st["f"], st["t"], st["dt"]
            dt = jnp.where(jnp.isfinite(dt), dt, 0.0)
            dt = jnp.maximum(dt, 0.0)
            t1 = t0 + dt
            t0_32, dt_32, t1_32 = t0.astype(jnp.float32), dt.astype(jnp.float32), t1.astype(jnp.float32)
            t_end_stage = jnp.nextafter(t1_32, jnp.float32(-jnp.inf))   # `Perturb.PREV` for the α = 1 stages

            def stage(i, c):
                # stage i + 1: y0 + Σ_{j ≤ i} k_j·(β_ij·dt) (the row's later columns are zero), at t0 + α_i·dt
                ks, _, tes = c
                ti = jnp.where(at_end[i], t_end_stage, t0_32 + alpha_rows[i] * dt_32)
                yi = y0 + _wsum(ks, beta_rows[i], dt_32)
                fi, te = f(ti, yi, args)
                return ks.at[i + 1].set(fi), yi, tes.at[i].set(te)

            ks0 = jnp.zeros((n_stages + 1,) + y0.shape, jnp.float32).at[0].set(f0)
            ks, y1, tes = jax.lax.fori_loop(0, n_stages, stage, (ks0, y0, jnp.zeros((n_stages,), jnp.float32)))
            t_evals = jax.lax.dynamic_update_slice(st["t_evals"], tes, (st["nfe"],))
            nfe = st["nfe"] + n_stages
            ks = [ks[j] for j in range(n_stages + 1)]
            f1 = ks[-1]      # y1, the last stage's input, is the 5th-order solution (its β row holds the b weights)
            err = _wsum(ks, _C_ERROR32, dt_32)
            tol = atol32 + rtol32 * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
            ratio = _rms(err / tol)
            accept = ratio <= 1.0
            bad = ~jnp.isfinite(ratio) | ~jnp.all(jnp.isfinite(y1))
            accept = accept & ~bad

            # dense output (torchdiffeq `_interp_fit`)
            y_mid = y0 + _wsum(ks, _C_MID32, dt_32)
            a = 2 * dt_32 * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
            b = dt_32 * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
            c = dt_32 * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
            d = dt_32 * f0
            new_coeffs = (y0, d, c, b, a)
            coeffs = tuple(jnp.where(accept, n, o) for n, o in zip(new_coeffs, st["coeffs"]))

            # next step size (torchdiffeq `_optimal_step_size`), float64
            r64 = ratio.astype(jnp.float64)
            dfactor = jnp.where(ratio < 1.0, 1.0, 0.2)
            factor = jnp.minimum(10.0, jnp.maximum(0.9 / jnp.where(r64 == 0, 1.0, r64) ** (1.0 / 5.0), dfactor))
            dt_next = jnp.where(ratio == 0, dt * 10.0, dt * factor)
            return dict(y=jnp.where(accept, y1, y0), f=jnp.where(accept, f1, f0), t_prev=t0,
                        t=jnp.where(accept, t1, t0), dt=dt_next, coeffs=coeffs, steps=st["steps"] + 1,
                        acc=st["acc"] + accept.astype(jnp.int32), rej=st["rej"] + (~accept).astype(jnp.int32),
                        nfe=nfe, t_evals=t_evals, bad=bad)

        st = jax.lax.while_loop(cond, body, init)

        # dense-output read-out at s_end (torchdiffeq `_interp_evaluate`)
        x = ((s_end64 - st["t_prev"]) / (st["t"] - st["t_prev"])).astype(jnp.float32)
        e, d, c, b, a = st["coeffs"]
        total = e + x * d
        xp = x
        for coef in (c, b, a):
            xp = xp * x
            total = total + xp * coef
        done = st["t"] >= s_end64
        result = jnp.where(st["bad"], RESULT_NONFINITE, jnp.where(done, RESULT_SUCCESS, RESULT_MAX_STEPS))
        return CompatResult(total.astype(jnp.float32), st["nfe"].astype(jnp.int32), st["acc"].astype(jnp.int32),
                            st["rej"].astype(jnp.int32), result.astype(jnp.int32), st["t_evals"])
