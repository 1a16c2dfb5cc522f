"""`Autoencoder`: the networks every model of the paper shares (supplement 2.1), a content and a
style latent, and the likelihood of an observation given both."""

import numpy as np
import tensorflow as tf

from mlvae_tf import distributions, grouping, losses, networks, validation
from mlvae_tf.models.base import GroupedModel

__all__ = ["Autoencoder"]


class Autoencoder(GroupedModel):
    """The encoder q(s_i | x_i), q(c | x_i) and decoder p(x_i | c, s_i) of `mlvae_tf.networks`.

    Subclasses say how the content is shared (their `compute_elbo_terms` and `encode_groups`);
    `AMORTISED = False` (SVI) builds the decoder only.

    Args:
        input_shape: shape of one observation, e.g. `(8, 8, 1)`.
        content_dim: size of the content latent.
        style_dim: size of the style latent (per observation).
        architecture: "mlp", "conv64", "spatial" or "equivariant" (see `mlvae_tf.networks`).
        likelihood: "bernoulli", "normal" (learned per-pixel log-variance) or "normal_fixed"
            (scale `observation_scale`).
        hidden_units: width of the "mlp" hidden layers.
        observation_scale: standard deviation of the "normal_fixed" likelihood.
        kl_style_weight, kl_content_weight: weights of the KL terms (1 is the ELBO).
        seed: seed of the sampling noise.
    """

    TERMS = ("loss", "reconstruction", "kl_style", "kl_content")
    AMORTISED = True

    def __init__(
        self,
        input_shape,
        content_dim=10,
        style_dim=10,
        architecture="mlp",
        likelihood="bernoulli",
        hidden_units=500,
        observation_scale=1.0,
        kl_style_weight=1.0,
        kl_content_weight=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(input_shape, seed=seed, **kwargs)
        if likelihood not in distributions.LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {distributions.LIKELIHOODS}, got {likelihood!r}.")
        if not observation_scale > 0:
            raise ValueError(f"`observation_scale` must be > 0, got {observation_scale!r}.")
        self.content_dim = validation.check_positive_int(content_dim, "content_dim")
        self.style_dim = validation.check_positive_int(style_dim, "style_dim")
        self.hidden_units = validation.check_positive_int(hidden_units, "hidden_units")
        self.architecture = architecture
        self.likelihood = likelihood
        self.observation_scale = float(observation_scale)
        self.kl_style_weight = float(kl_style_weight)
        self.kl_content_weight = float(kl_content_weight)
        if self.AMORTISED:
            self.encoder = networks.build_encoder(architecture, self.input_shape, content_dim, style_dim, hidden_units)
        self.decoder = networks.build_decoder(
            architecture, self.input_shape, content_dim, style_dim, likelihood, hidden_units
        )
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "content_dim": self.content_dim,
            "style_dim": self.style_dim,
            "architecture": self.architecture,
            "likelihood": self.likelihood,
            "hidden_units": self.hidden_units,
            "observation_scale": self.observation_scale,
            "kl_style_weight": self.kl_style_weight,
            "kl_content_weight": self.kl_content_weight,
        }

    def call(self, images, training=False):
        """The per-observation posterior parameters; see `encode`."""
        return self._encode(images, training=training)

    def encode(self, images):
        """Per-observation posteriors q(s_i | x_i) and q(c | x_i).

        Args:
            images: float `[N, *input_shape]`.

        Returns:
            dict of `[N, d]` float32 tensors: `style_mean`, `style_log_var`, `content_mean`,
            `content_log_var` (log-variances clamped as the model uses them).
        """
        return self._encode(validation.check_images(images, self.input_shape))

    def encode_groups(self, images, group_ids, num_groups=None):
        """Group posteriors q(c_g | X_g) (accumulated evidence) and per-observation styles.

        Args:
            images: float `[N, *input_shape]`.
            group_ids: int `[N]` in `[0, num_groups)`, every group with at least one image.
            num_groups: number of groups `G`; `max(group_ids) + 1` when omitted.

        Returns:
            dict: `content_mean`, `content_log_var` `[G, content_dim]` (`_aggregate`: the product of
            Normals of each group, or for the ML-VAE's mixture the moment-matched Normal);
            `style_mean`, `style_log_var` `[N, style_dim]`.
        """
        images = validation.check_images(images, self.input_shape)
        rows = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]  # a tensor when traced
        group_ids, num_groups = validation.check_group_ids(group_ids, rows, num_groups)
        encoded = self._encode(images)
        content_mean, content_log_var = self._aggregate(
            encoded["content_mean"], encoded["content_log_var"], group_ids, num_groups
        )
        return {
            "content_mean": content_mean,
            "content_log_var": content_log_var,
            "style_mean": encoded["style_mean"],
            "style_log_var": encoded["style_log_var"],
        }

    def _aggregate(self, mean, log_var, group_ids, num_groups):
        """A group's content posterior from its members': the product of Normals (eq. 7)."""
        return grouping.product_of_normals(mean, log_var, group_ids, num_groups)

    def decode(self, content, style):
        """Mean of p(x | c, s).

        Args:
            content: `[N, content_dim]`; style: `[N, style_dim]`.

        Returns:
            float32 `[N, *input_shape]`.
        """
        return self.decode_params(content, style)["mean"]

    def decode_params(self, content, style):
        """Parameters of p(x | c, s): `mean` `[N, *input_shape]`, plus `log_var` for the "normal"
        likelihood (its learned per-pixel log-variance)."""
        content = validation.check_latent(content, self.content_dim, "content")
        style = validation.check_latent(style, self.style_dim, "style")
        content = validation.check_same_rows(content, style, ("content", "style"))
        return self._decoded_params(content, style)

    def _decoded_params(self, content, style):
        """`decode_params` on latents that are known to be good (no checks)."""
        params = {name: tf.cast(value, tf.float32) for name, value in self._decode(content, style).items()}
        if self.likelihood == "bernoulli":
            return {"mean": tf.sigmoid(params["logits"])}
        if self.likelihood == "normal":
            return {"mean": params["mean"], "log_var": grouping.clamp_log_var(params["log_var"])}
        return {"mean": params["mean"]}

    # Terms shared by the subclasses.

    def _log_likelihood(self, images, content, style, is_observed, training=False):
        """log p(x_i | c_i, s_i) per observation, 0 for padding rows. `[N]`."""
        # Pixels flattened to one event axis: the same log-density, and a reduction XLA's CPU
        # backend runs several times faster than over a trailing axis of size 1.
        pixels = (-1, int(np.prod(self.input_shape)))
        params = self._decode(content, style, training=training, observed=is_observed)
        params = {name: tf.reshape(tf.cast(value, images.dtype), pixels) for name, value in params.items()}
        log_likelihood = distributions.likelihood(self.likelihood, params, 1, self.observation_scale).log_prob(
            tf.reshape(images, pixels)
        )
        return log_likelihood * tf.cast(is_observed, images.dtype)

    def _elbo_terms(self, log_likelihood, kl_style, kl_content, num_groups):
        """`losses.average_group_elbo` with this model's KL weights."""
        return losses.average_group_elbo(
            log_likelihood, kl_style, kl_content, num_groups, self.kl_style_weight, self.kl_content_weight
        )

    def _draw_noise(self, num_observations, seed=None):
        """Standard noise `content` `[N, content_dim]` and `style` `[N, style_dim]` for one step,
        from `seed` (int32 `[2]`; default: the seed generator's next). Philox is named explicitly:
        under XLA on the CPU, the auto-selected algorithm's key derivation makes each draw about
        ten times slower (benchmarks/README.md)."""
        seed = self._next_seed() if seed is None else seed
        both = tf.random.stateless_normal(
            (num_observations, self.content_dim + self.style_dim), seed, alg="philox"
        )
        return {"content": both[:, : self.content_dim], "style": both[:, self.content_dim :]}

    def _encode(self, images, training=False, observed=None):
        images = tf.convert_to_tensor(images)
        observed = self._observed(images, observed)
        encoded = self.encoder({"images": images, "observed": observed}, training=training)
        encoded = {name: tf.cast(value, tf.float32) for name, value in encoded.items()}
        for name in ("style_log_var", "content_log_var"):
            encoded[name] = grouping.clamp_log_var(encoded[name])
        return encoded

    def _decode(self, content, style, training=False, observed=None):
        content, style = tf.convert_to_tensor(content), tf.convert_to_tensor(style)
        observed = self._observed(content, observed)
        return self.decoder({"content": content, "style": style, "observed": observed}, training=training)

