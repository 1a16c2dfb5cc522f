"""Every data set of the configs by name, as train / val / test arrays grouped by a label."""

from mlvae_tf.data.digits import digits_splits
from mlvae_tf.data.grouped import split_observations
from mlvae_tf.data.idx import fashion_mnist_splits
from mlvae_tf.data.tfds import load_tfds_arrays, mnist_splits

__all__ = ["load_splits"]


def _take(labels, index):
    """`labels[index]`, or each grouping's (`{key: [N]}`)."""
    return {key: value[index] for key, value in labels.items()} if isinstance(labels, dict) else labels[index]


def load_splits(name, group_key="label", seed=0, data_dir=None):
    """Train, validation and test parts of a named data set.

    "digits" (bundled) and "fashion_mnist" (Debian's package) are read locally; "mnist" comes
    from TFDS with the paper's 50,000 / 10,000 random split and the test set; "grouped_shapes"
    (64x64x3, 20,000 images) and "grouped_shapes/small" (32x32x3, 3,000) are built offline and
    split 80 / 10 / 10 at random, grouped by `group_key` (e.g. "shape"). A list of group keys
    gives several groupings (`MultiLevelVAE`): e.g. `["shape", "color"]`.

    Returns:
        dict `{"train" | "val" | "test": (images float32 [N, ...], labels int [N])}`; with a list
        of group keys the labels are a dict `{key: int [N]}`.
    """
    if name in ("digits", "fashion_mnist", "mnist"):
        keys = group_key if isinstance(group_key, list) else [group_key]
        if keys != ["label"]:
            raise ValueError(f"`group_key`: {name} has one label, \"label\"; got {group_key!r}.")
        splits = (digits_splits(seed) if name == "digits" else fashion_mnist_splits(seed) if name == "fashion_mnist"
                  else mnist_splits("label", seed, data_dir=data_dir))
        if isinstance(group_key, list):
            return {part: (x, {"label": labels}) for part, (x, labels) in splits.items()}
        return splits
    if name in ("grouped_shapes", "grouped_shapes/small"):
        builder = name if "/" in name else "grouped_shapes/default"
        x, labels = load_tfds_arrays(builder, group_key, data_dir=data_dir)
        parts = split_observations(len(x), (0.8, 0.1, 0.1), seed=seed)
        return {part: (x[idx], _take(labels, idx)) for part, idx in zip(("train", "val", "test"), parts)}
    raise ValueError("`name` must be one of digits, fashion_mnist, mnist, grouped_shapes, grouped_shapes/small; "
                     f"got {name!r}.")
