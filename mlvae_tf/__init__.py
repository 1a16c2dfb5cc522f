"""mlvae_tf: the Multi-Level Variational Autoencoder (Bouchacourt, Tomioka and Nowozin, 2017)
in Keras 3 and TensorFlow."""

from mlvae_tf import data, distributions, evaluation, grouping, losses, networks
from mlvae_tf.model import MLVAE

__version__ = "0.1.0"

__all__ = ["MLVAE", "data", "distributions", "evaluation", "grouping", "losses", "networks", "__version__"]
