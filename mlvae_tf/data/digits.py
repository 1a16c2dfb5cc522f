"""The bundled default data: scikit-learn's 8x8 digits (1,797 images, 10 classes), no download."""

import numpy as np

__all__ = ["load_digits"]


def load_digits():
    """scikit-learn's 8x8 handwritten digits as images grouped by label.

    Returns:
        `(x, labels)`: float32 `[1797, 8, 8, 1]` in `[0, 1]` and int32 `[1797]` in `[0, 10)`.
    """
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]
    return x, bunch.target.astype(np.int32)
