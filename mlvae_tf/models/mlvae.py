"""The Multi-Level VAE as a Keras model (paper, section 3 and Algorithm 1)."""

import keras
import tensorflow as tf

from mlvae_tf import distributions, grouping
from mlvae_tf.models.autoencoder import Autoencoder

__all__ = ["MLVAE", "TERMS"]

TERMS = Autoencoder.TERMS  # loss, reconstruction, kl_style, kl_content


@keras.saving.register_keras_serializable(package="mlvae_tf")
class MLVAE(Autoencoder):
    """ML-VAE: a content latent shared by each group and a style latent per observation.

    `fit` takes batches of whole groups, either a `tf.RaggedTensor` `[groups, (observations),
    *input_shape]` (what `mlvae_tf.data.grouped_dataset` yields) or a pair `(images [N,
    *input_shape], group_ids int [N])`, and minimises the negative average group ELBO (eq. 5):
    one content sample per observation from its group's posterior (Algorithm 1, step 9), one
    style sample per observation, the content KL once per group, divided by the number of groups.

    Args:
        input_shape: shape of one observation, e.g. `(8, 8, 1)`.
        content_dim: size of the content latent (shared by a group).
        style_dim: size of the style latent (per observation).
        architecture: "mlp" or "conv64" (see `mlvae_tf.networks`).
        likelihood: "bernoulli", "normal" (learned per-pixel log-variance) or "normal_fixed"
            (scale `observation_scale`).
        aggregation: "product" (product of Normals, eq. 7) or "mixture" (mixture of Normals,
            supplement section 1, KL estimated with |G| samples).
        hidden_units: width of the "mlp" hidden layers.
        observation_scale: standard deviation of the "normal_fixed" likelihood.
        kl_style_weight, kl_content_weight: weights of the KL terms (1 is the ELBO).
        seed: seed of the sampling noise.

    Example:
        >>> model = MLVAE(input_shape=(8, 8, 1), content_dim=5, style_dim=3)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=32), epochs=1)
    """

    def __init__(self, input_shape, content_dim=10, style_dim=10, architecture="mlp", likelihood="bernoulli",
                 aggregation="product", hidden_units=500, observation_scale=1.0, kl_style_weight=1.0,
                 kl_content_weight=1.0, seed=None, **kwargs):
        if aggregation not in distributions.AGGREGATIONS:
            raise ValueError(f"`aggregation` must be one of {distributions.AGGREGATIONS}, got {aggregation!r}.")
        super().__init__(input_shape, content_dim=content_dim, style_dim=style_dim, architecture=architecture,
                         likelihood=likelihood, hidden_units=hidden_units, observation_scale=observation_scale,
                         kl_style_weight=kl_style_weight, kl_content_weight=kl_content_weight, seed=seed, **kwargs)
        self.aggregation = aggregation

    def get_config(self):
        return {**super().get_config(), "aggregation": self.aggregation}

    def _aggregate(self, mean, log_var, group_ids, num_groups):
        """The group's content posterior: the product of Normals, or the mixture's moments."""
        if self.aggregation == "mixture":
            return grouping.mixture_of_normals_moments(mean, log_var, group_ids, num_groups)
        return grouping.product_of_normals(mean, log_var, group_ids, num_groups)

    # Training.

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The terms of eq. 5 on flat observations (see `mlvae_tf.losses.average_group_elbo`).

        Args:
            images: `[N, *input_shape]`; group_ids: int32 `[N]` (-1: a padding row, left out);
            num_groups: scalar, the number of groups (the loss is per group).
            noise: optional dict of standard noise `content` `[N, content_dim]`, `style`
                `[N, style_dim]` and, for the mixture, `component` uniform `[N]`; drawn when omitted.
            num_segments: rows of the per-group tensors, `>= num_groups` (`num_groups` when
                omitted). Under XLA it must not depend on the data, or every batch recompiles:
                the pair form passes the batch size.

        Returns:
            dict of scalars `loss`, `reconstruction`, `kl_style`, `kl_content`.
        """
        # Padding rows (`to_pairs(pad_to=...)`) have group id -1: segment sums drop them, batch
        # normalisation leaves them out of its statistics, and their terms are masked out below.
        is_observed = group_ids >= 0  # [N]
        observed = tf.cast(is_observed, tf.float32)
        encoded = self._encode(images, training=training, observed=is_observed)
        if noise is None:
            noise = self._draw_noise(tf.shape(images)[0])
        segments = num_groups if num_segments is None else num_segments
        content, kl_content = self._content(encoded["content_mean"], encoded["content_log_var"], group_ids, segments,
                                            noise["content"], noise.get("component"))
        style = distributions.reparameterize(encoded["style_mean"], encoded["style_log_var"], noise["style"])
        kl_style = distributions.kl_standard_normal(encoded["style_mean"], encoded["style_log_var"]) * observed  # [N]
        log_likelihood = self._log_likelihood(images, content, style, is_observed, training=training)  # [N]
        return self._elbo_terms(log_likelihood, kl_style, kl_content, num_groups)

    def _content(self, mean, log_var, group_ids, segments, noise, component=None):
        """One content sample per observation from its group's posterior (Algorithm 1, step 9),
        and the content KL of each group.

        Args:
            mean, log_var: `[N, d]` per-observation content posteriors; group_ids: int32 `[N]`
                (-1: a padding row); segments: rows of the per-group tensors; noise: standard
                `[N, d]`; component: uniform `[N]`, the mixture's choice of member.

        Returns:
            `(content [N, d], kl_content [segments])`; empty segments are the prior, with KL 0.
        """
        if self.aggregation == "product":
            group_mean, group_log_var = grouping.product_of_normals(mean, log_var, group_ids, segments)
            rows = tf.maximum(group_ids, 0)
            content = distributions.reparameterize(tf.gather(group_mean, rows), tf.gather(group_log_var, rows), noise)
            return content, distributions.kl_standard_normal(group_mean, group_log_var)
        check = tf.debugging.assert_non_negative(
            group_ids, message="aggregation='mixture' takes no padding rows (group id -1): no `pad_to`"
        )
        with tf.control_dependencies([check]):
            member = grouping.sample_mixture_components(group_ids, segments, component)  # [N]
        content = distributions.reparameterize(tf.gather(mean, member), tf.gather(log_var, member), noise)
        return content, distributions.mixture_kl_standard_normal(content, mean, log_var, group_ids, segments)

    def _draw_noise(self, num_observations):
        """`Autoencoder._draw_noise`, and for the mixture `component` uniform `[N]` (which member's
        Normal each content sample comes from)."""
        seed = tf.cast(self.seed_generator.next(), tf.int32)
        noise = super()._draw_noise(num_observations, seed)
        if self.aggregation == "mixture":
            seed = tf.random.experimental.stateless_fold_in(seed, 1)
            noise["component"] = tf.random.stateless_uniform((num_observations,), seed, alg="philox")
        return noise

    def _xla_refusal(self):
        if self.aggregation == "mixture":
            return "needs aggregation='product': the mixture's KL uses ragged ops that XLA cannot compile."
        return None
