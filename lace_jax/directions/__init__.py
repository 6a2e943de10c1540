"""Latent directions for continuous factors, found without labels (Plumerault, Le Borgne & Hudelot, ICLR 2020).

Pipeline: ``transforms`` (T_δ on image batches, with masks) → ``trajectories.build_trajectories`` (invert the
generator on T_δ(G(z0)) step by step with ``inversion.invert``) → ``fitting.fit_monotone`` (unit direction u and
the monotone law t = g(⟨z, u⟩)) → ``fitting.edit_by`` / ``edit_to`` / ``traverse``. ``walk.train_linear_walk`` is
the linear-walk baseline of Jahanian et al. Generators are callables ``z[B, D] -> images[B, C, H, W]`` in [−1, 1].
See ``docs/directions.md``.
"""
from lace_jax.directions.fitting import (Direction, MonotoneFit, calibrate, coordinate, edit_by, edit_to, factor,
                                         factor_range, fit_linear, fit_monotone, g_inverse, g_of, linear_direction,
                                         moment_direction, traverse)
from lace_jax.directions.inversion import (InversionResult, fourier_error, gaussian_transfer, invert, lowpass, mse,
                                           project, reconstruction_error)
from lace_jax.directions.trajectories import Trajectories, build_trajectories, error_filter, paper_deltas
from lace_jax.directions.transforms import (TRANSFORMS, brightness, get_transform, hue, hue_matrix, translate_x,
                                            translate_y, zoom)
from lace_jax.directions.walk import WalkResult, train_linear_walk, walk_loss

__all__ = [
    "Direction", "MonotoneFit", "calibrate", "coordinate", "edit_by", "edit_to", "factor", "factor_range",
    "fit_linear", "fit_monotone", "g_inverse", "g_of", "linear_direction", "moment_direction", "traverse",
    "InversionResult", "fourier_error", "gaussian_transfer", "invert", "lowpass", "mse", "project",
    "reconstruction_error", "Trajectories", "build_trajectories", "error_filter", "paper_deltas", "TRANSFORMS",
    "brightness", "get_transform", "hue", "hue_matrix", "translate_x", "translate_y", "zoom", "WalkResult",
    "train_linear_walk", "walk_loss",
]
