"""Evaluation: the paper's quantitative protocol and its qualitative grids."""

from mlvae_tf.evaluation.grids import (
    evidence_grid,
    generation_grid,
    interpolation_grid,
    readable_scale,
    swap_grid,
    tile,
)
from mlvae_tf.evaluation.latents import latent_factor_accuracy, latent_swap_grid, latents, probe_accuracy
from mlvae_tf.evaluation.leakage import compute_leakage, linear_probe_accuracy
from mlvae_tf.evaluation.protocol import (
    FEATURES,
    accumulated_features,
    check_disjoint,
    compute_protocol,
    conditional_entropy_bits,
    largest_K,
    whole_latent,
)

__all__ = ["swap_grid", "interpolation_grid", "generation_grid", "evidence_grid", "tile", "readable_scale",
           "compute_leakage", "linear_probe_accuracy", "compute_protocol", "conditional_entropy_bits",
           "accumulated_features", "check_disjoint", "largest_K", "FEATURES", "whole_latent", "latents",
           "latent_factor_accuracy", "latent_swap_grid", "probe_accuracy"]
