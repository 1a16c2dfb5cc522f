"""Grouped data: `tf.data` pipelines of whole groups and the bundled data sets."""

from mlvae_tf.data.digits import DIGITS_SPLIT, digits_splits, load_digits
from mlvae_tf.data.grouped import group_index, grouped_dataset, split_groups, split_observations

__all__ = ["grouped_dataset", "split_groups", "split_observations", "group_index", "load_digits", "digits_splits",
           "DIGITS_SPLIT"]
