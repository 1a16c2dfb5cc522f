"""Every data set of the configs by name, as train / val / test arrays grouped by a label."""

from mlvae_tf.data.digits import digits_splits
from mlvae_tf.data.grouped import split_observations
from mlvae_tf.data.idx import fashion_mnist_splits
from mlvae_tf.data.tfds import load_tfds_arrays, mnist_splits

__all__ = ["load_splits"]


def load_splits(name, group_key="label", seed=0, data_dir=None):
    """Train, validation and test parts of a named data set.

    "digits" (bundled) and "fashion_mnist" (Debian's package) are read locally; "mnist" comes
    from TFDS with the paper's 50,000 / 10,000 random split and the test set; "grouped_shapes" is built offline
    (64x64x3) and split 80 / 10 / 10 at random, grouped by `group_key` (e.g. "shape").

    Returns:
        dict `{"train" | "val" | "test": (images float32 [N, ...], labels int [N])}`.
    """
    if name == "digits":
        return digits_splits(seed)
    if name == "fashion_mnist":
        return fashion_mnist_splits(seed)
    if name == "mnist":
        return mnist_splits(group_key, seed, data_dir=data_dir)
    if name == "grouped_shapes":
        x, labels = load_tfds_arrays("grouped_shapes/default", group_key, data_dir=data_dir)
        parts = split_observations(len(x), (0.8, 0.1, 0.1), seed=seed)
        return {part: (x[idx], labels[idx]) for part, idx in zip(("train", "val", "test"), parts)}
    raise ValueError(f"`name` must be one of digits, fashion_mnist, mnist, grouped_shapes; got {name!r}.")
