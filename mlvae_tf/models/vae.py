"""The paper's baselines with amortised inference: the i.i.d. VAE (Figure 2b) and the regularised
VAE (supplement section 8, eq. 18), on the ML-VAE's networks."""

import keras
import tensorflow as tf

from mlvae_tf import distributions, grouping, losses
from mlvae_tf.models.autoencoder import Autoencoder

__all__ = ["VAE", "RegularisedVAE"]


@keras.saving.register_keras_serializable(package="mlvae_tf")
class VAE(Autoencoder):
    """The i.i.d. VAE: the ML-VAE's networks, one latent `(content, style)` of size
    `content_dim + style_dim` per observation, and no use of the groups in training.

    Its loss is every observation's ELBO, summed over the batch and divided by the number of
    groups, so its terms read on the ML-VAE's per-group scale; `kl_content` and `kl_style` are
    the KLs of the latent's two parts. `encode_groups` accumulates the content part over a group
    with the product of Normals, as the ML-VAE; `mlvae_tf.evaluation.whole_latent` accumulates
    the whole latent, as the paper does for the VAE in Figure 6c.

    Args: as `Autoencoder`.
    """

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The per-observation ELBO terms, summed and divided by `num_groups`.

        Args and returns: as `MLVAE.compute_elbo_terms` (the `component` noise is not used).
        """
        return self._observation_terms(images, group_ids, num_groups, training, noise)[0]

    def _observation_terms(self, images, group_ids, num_groups, training, noise):
        """`(terms, encoded, is_observed)`: the ELBO terms with a content latent per observation."""
        is_observed = group_ids >= 0  # [N]; -1: a padding row
        observed = tf.cast(is_observed, tf.float32)
        encoded = self._encode(images, training=training, observed=is_observed)
        if noise is None:
            noise = self._draw_noise(tf.shape(images)[0])
        content = distributions.reparameterize(encoded["content_mean"], encoded["content_log_var"], noise["content"])
        style = distributions.reparameterize(encoded["style_mean"], encoded["style_log_var"], noise["style"])
        kl_content = distributions.kl_standard_normal(encoded["content_mean"], encoded["content_log_var"]) * observed
        kl_style = distributions.kl_standard_normal(encoded["style_mean"], encoded["style_log_var"]) * observed
        log_likelihood = self._log_likelihood(images, content, style, is_observed, training=training)  # [N]
        terms = self._elbo_terms(log_likelihood, kl_style, kl_content, num_groups)
        return terms, encoded, is_observed


@keras.saving.register_keras_serializable(package="mlvae_tf")
class RegularisedVAE(VAE):
    """"Regularising the objective" (supplement section 8): the VAE, whose content posteriors of
    pairs of observations of a group are pulled together by a symmetrised KL (eq. 18).

    The penalty pairs each group's 1st and 2nd observations, its 3rd and 4th, ... (in batch
    order), averages the pairs' `(KL(q_a || q_b) + KL(q_b || q_a)) / 2` per group and the groups'
    averages over the batch, weighted by `penalty_weight` (lambda), on the ELBO's per-group scale
    (`mlvae_tf.losses.pair_penalty`). The paper reports that with a large latent the content then
    goes to the prior, which makes the penalty 0.

    Args:
        penalty_weight: lambda, >= 0 (0 is the VAE).
        Others: as `Autoencoder`.
    """

    TERMS = VAE.TERMS + ("penalty",)

    def __init__(self, input_shape, penalty_weight=1.0, **kwargs):
        super().__init__(input_shape, **kwargs)
        if not penalty_weight >= 0:
            raise ValueError(f"`penalty_weight` must be >= 0, got {penalty_weight!r}.")
        self.penalty_weight = float(penalty_weight)

    def get_config(self):
        return {**super().get_config(), "penalty_weight": self.penalty_weight}

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The VAE's terms, `penalty` (lambda times eq. 18's term) and `loss` with it.

        Args and returns: as `VAE.compute_elbo_terms`, plus `penalty`.
        """
        terms, encoded, is_observed = self._observation_terms(images, group_ids, num_groups, training, noise)
        segments = num_groups if num_segments is None else num_segments
        first, second, is_pair, pair_group = grouping.consecutive_pairs(group_ids, segments)  # [N] each
        mean, log_var = encoded["content_mean"], encoded["content_log_var"]
        pair_kl = distributions.symmetrised_kl(tf.gather(mean, first), tf.gather(log_var, first),
                                               tf.gather(mean, second), tf.gather(log_var, second))  # [N]
        num_observations = tf.reduce_sum(tf.cast(is_observed, tf.float32))
        penalty = self.penalty_weight * losses.pair_penalty(pair_kl, is_pair, pair_group, num_observations,
                                                            num_groups, segments)
        return dict(terms, loss=terms["loss"] + penalty, penalty=penalty)
