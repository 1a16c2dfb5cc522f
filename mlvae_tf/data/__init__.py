"""Grouped data: `tf.data` pipelines of whole groups, TFDS adapters and the bundled data sets.

`from_tfds`, `mnist_datasets` and the `grouped_shapes` builder import TFDS when first used.
"""

from mlvae_tf.data.digits import DIGITS_SPLIT, digits_splits, load_digits
from mlvae_tf.data.grouped import (
    group_index,
    grouped_dataset,
    largest_batch,
    multi_grouped_dataset,
    split_groups,
    split_observations,
    split_validation,
    to_pairs,
)
from mlvae_tf.data.replicas import distribute
from mlvae_tf.data.idx import fashion_mnist_splits, load_fashion_mnist, read_idx
from mlvae_tf.data.splits import load_splits
from mlvae_tf.data.tfds import DataUnavailableError, from_tfds, load_tfds_arrays, mnist_datasets, mnist_splits

__all__ = ["grouped_dataset", "multi_grouped_dataset", "distribute", "to_pairs", "largest_batch", "split_groups", "split_observations", "split_validation", "group_index", "load_digits", "digits_splits",
           "DIGITS_SPLIT", "from_tfds", "load_tfds_arrays", "mnist_datasets", "mnist_splits", "load_splits", "read_idx", "load_fashion_mnist", "fashion_mnist_splits",
           "DataUnavailableError"]
