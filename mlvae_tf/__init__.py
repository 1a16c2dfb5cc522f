"""mlvae_tf: the Multi-Level Variational Autoencoder (Bouchacourt, Tomioka and Nowozin, 2017)
in Keras 3 and TensorFlow."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) hides our own messages; a user's
# own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mlvae_tf import data, distributions, evaluation, grouping, losses, networks  # noqa: E402
from mlvae_tf.model import MLVAE  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MLVAE", "data", "distributions", "evaluation", "grouping", "losses", "networks", "__version__"]
