"""Evaluation: the paper's quantitative protocol and its qualitative grids."""

from mlvae_tf.evaluation.grids import evidence_grid, generation_grid, interpolation_grid, swap_grid, tile
from mlvae_tf.evaluation.leakage import compute_leakage
from mlvae_tf.evaluation.protocol import (
    accumulated_features,
    compute_protocol,
    conditional_entropy_bits,
    split_within_groups,
)

__all__ = ["swap_grid", "interpolation_grid", "generation_grid", "evidence_grid", "tile", "compute_leakage", "compute_protocol", "conditional_entropy_bits", "accumulated_features",
           "split_within_groups"]
