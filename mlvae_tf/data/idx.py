"""Fashion-MNIST from local IDX files (Debian's `dataset-fashion-mnist`), grouped by class.

70,000 28x28 grey images in 10 classes, in MNIST's IDX format, at the paper's MNIST scale and
without any download: `apt-get install dataset-fashion-mnist` puts them in `FASHION_MNIST_DIR`.
"""

import gzip
import os

import numpy as np

__all__ = ["FASHION_MNIST_DIR", "read_idx", "load_fashion_mnist", "fashion_mnist_splits"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads an IDX file (optionally gzipped) into a NumPy array of its own shape and dtype."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4].hex()}).")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    array = np.frombuffer(data, dtype=np.dtype(_IDX_DTYPES[data[2]]), offset=4 + 4 * rank)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {array.size} values.")
    return array.reshape(shape)


def load_fashion_mnist(split="train", root=FASHION_MNIST_DIR):
    """Fashion-MNIST images and labels of a split ("train": 60,000, "test": 10,000).

    Returns:
        `(x, labels)`: float32 `[N, 28, 28, 1]` in [0, 1] and int32 `[N]` in [0, 10).
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    paths = [os.path.join(root, f"{prefix}-{kind}-idx{rank}-ubyte.gz") for kind, rank in (("images", 3), ("labels", 1))]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found: install Debian's package with "
                                "`apt-get install dataset-fashion-mnist`, or pass `root`.")
    images, labels = (read_idx(p) for p in paths)
    return (images.astype(np.float32) / 255.0)[..., None], labels.astype(np.int32)


def fashion_mnist_splits(seed=0, root=FASHION_MNIST_DIR):
    """The paper's MNIST protocol on Fashion-MNIST: the 60,000 training images split at random
    into 50,000 train and 10,000 validation, and the standard 10,000 test images.

    Returns:
        dict `{"train" | "val" | "test": (x, labels)}`.
    """
    from mlvae_tf.data.grouped import split_validation

    return dict(split_validation(*load_fashion_mnist("train", root), seed=seed), test=load_fashion_mnist("test", root))
