"""Where `MLVAE` lived before `mlvae_tf.models`; kept so that `from mlvae_tf.model import MLVAE` works."""

from mlvae_tf.models.mlvae import MLVAE, TERMS

__all__ = ["MLVAE", "TERMS"]
