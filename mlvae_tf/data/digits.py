"""The bundled default data: scikit-learn's 8x8 digits (1,797 images, 10 classes), no download."""

import numpy as np

__all__ = ["DIGITS_SPLIT", "load_digits", "digits_splits"]

# Fractions of the observation split used by `make demo`, the evaluation command and the tests.
DIGITS_SPLIT = (0.7, 0.15, 0.15)


def load_digits():
    """scikit-learn's 8x8 handwritten digits as images grouped by label.

    Returns:
        `(x, labels)`: float32 `[1797, 8, 8, 1]` in `[0, 1]` and int32 `[1797]` in `[0, 10)`.
    """
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    return x, bunch.target.astype(np.int32)


def digits_splits(seed=0):
    """The digits split into train / val / test observations that share the 10 groups (as the
    paper's MNIST split), `DIGITS_SPLIT` of the images each.

    Returns:
        dict `{"train" | "val" | "test": (x, labels)}`.
    """
    from mlvae_tf.data.grouped import split_observations

    x, labels = load_digits()
    parts = split_observations(len(x), DIGITS_SPLIT, seed=seed)
    return {name: (x[idx], labels[idx]) for name, idx in zip(("train", "val", "test"), parts)}
