"""Evaluation: the paper's quantitative protocol and its qualitative grids."""

from mlvae_tf.evaluation.grids import swap_grid, tile
from mlvae_tf.evaluation.leakage import compute_leakage
from mlvae_tf.evaluation.protocol import accumulated_features, compute_protocol, conditional_entropy_bits

__all__ = ["swap_grid", "tile", "compute_leakage", "compute_protocol", "conditional_entropy_bits", "accumulated_features"]
