"""The Multi-Level VAE as a Keras model (paper, section 3 and Algorithm 1)."""

import keras
import tensorflow as tf

from mlvae_tf import distributions, grouping, losses
from mlvae_tf.models.autoencoder import Autoencoder

__all__ = ["MLVAE", "TERMS", "CONTENT_SAMPLES", "DEPENDENCE"]

TERMS = Autoencoder.TERMS  # loss, reconstruction, kl_style, kl_content (and cycle, critic with their weights)
CONTENT_SAMPLES = ("observation", "group")
# The options that measure the style means' dependence on the groups, no adversary: the term's
# name (logged; `<name>_weight` weighs it) and its measure.
DEPENDENCE = {"independence": losses.group_dependence, "group_variance": losses.group_variance}


@tf.custom_gradient
def _reverse_gradient_op(x, scale):
    return tf.identity(x), lambda dy: (-scale * dy, tf.zeros_like(scale))


def _reverse_gradient(x, scale):
    """`x`, with its gradient multiplied by `-scale` (a critic's gradient turned against the encoder)."""
    return _reverse_gradient_op(x, tf.constant(scale, x.dtype))


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
        architecture: "mlp", "conv64", "spatial" or "equivariant" (see `mlvae_tf.networks`).
        likelihood: "bernoulli", "normal" (learned per-pixel log-variance) or "normal_fixed"
            (scale `observation_scale`).
        aggregation: "product" (product of Normals, eq. 7) or "mixture" (mixture of Normals,
            supplement section 1, KL estimated with |G| samples).
        hidden_units: width of the "mlp" hidden layers.
        observation_scale: standard deviation of the "normal_fixed" likelihood.
        kl_style_weight, kl_content_weight: weights of the KL terms (1 is the ELBO).
        content_samples: "observation" (one content sample per observation from its group's
            posterior, Algorithm 1) or "group" (one per group, shared by its members; "product"
            aggregation only). Beyond the paper, to keep class information out of the style.
        cycle_weight: weight of the reverse cycle of the cycle-consistent VAE (Jha et al., 2018),
            0 (the paper's model) by default: a style drawn from the prior is decoded with the
            contents of two different groups, both decodings are encoded again, and the L1
            distance between their two style means is added to the loss (logged as `cycle`, per
            group). Its gradient reaches the encoder only. Beyond the paper, as `content_samples`.
        critic_weight: weight of a critic on the style, 0 (the paper's model) by default: a small
            network learns to tell whether two style means of a batch come from the same group,
            and the encoder is trained against it (the critic's gradient, reversed and scaled by
            `critic_weight`). Logged as `critic`, its cross-entropy (ln 2 = 0.69 when it cannot tell).
        independence_weight: weight of the style's dependence on the groups, 0 (the paper's model)
            by default: the HSIC between the batch's style means and their group membership
            (`losses.group_dependence`, a Gaussian kernel at the style means' own scale), on the ELBO's
            per-group scale (times observations per group), is added to the loss; no adversary.
            Logged as `independence` (the HSIC).
        group_variance_weight: weight of the share of the style means' variance that lies between
            the batch's groups, 0 (the paper's model) by default (`losses.group_variance`: Pillai's
            trace over `style_dim`, what a linear classifier can read of the groups, whatever the
            scale), on the ELBO's per-group scale as `independence_weight`; no adversary. Logged
            as `group_variance`.
        seed: seed of the sampling noise.

    Example:
        >>> model = MLVAE(input_shape=(8, 8, 1), content_dim=5, style_dim=3)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=32), epochs=1)
    """

    def __init__(self, input_shape, content_dim=10, style_dim=10, architecture="mlp", likelihood="bernoulli",
                 aggregation="product", hidden_units=500, observation_scale=1.0, kl_style_weight=1.0,
                 kl_content_weight=1.0, content_samples="observation", cycle_weight=0.0, critic_weight=0.0,
                 independence_weight=0.0, group_variance_weight=0.0, seed=None, **kwargs):
        if aggregation not in distributions.AGGREGATIONS:
            raise ValueError(f"`aggregation` must be one of {distributions.AGGREGATIONS}, got {aggregation!r}.")
        if content_samples not in CONTENT_SAMPLES:
            raise ValueError(f"`content_samples` must be one of {CONTENT_SAMPLES}, got {content_samples!r}.")
        if content_samples == "group" and aggregation != "product":
            raise ValueError("`content_samples='group'` needs aggregation='product' (the mixture samples a member).")
        for name, weight in (("cycle_weight", cycle_weight), ("critic_weight", critic_weight),
                             ("independence_weight", independence_weight),
                             ("group_variance_weight", group_variance_weight)):
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ValueError(f"`{name}` must be a number >= 0, got {weight!r}.")
        super().__init__(input_shape, content_dim=content_dim, style_dim=style_dim, architecture=architecture,
                         likelihood=likelihood, hidden_units=hidden_units, observation_scale=observation_scale,
                         kl_style_weight=kl_style_weight, kl_content_weight=kl_content_weight, seed=seed, **kwargs)
        self.aggregation = aggregation
        self.content_samples = content_samples
        self.cycle_weight = float(cycle_weight)
        self.critic_weight = float(critic_weight)
        self.independence_weight = float(independence_weight)
        self.group_variance_weight = float(group_variance_weight)
        for name in DEPENDENCE:
            if getattr(self, f"{name}_weight"):
                self.trackers[name] = keras.metrics.Mean(name=name)
        if self.cycle_weight:
            self.trackers["cycle"] = keras.metrics.Mean(name="cycle")
        if self.critic_weight:
            self.trackers["critic"] = keras.metrics.Mean(name="critic")
            self.critic = keras.Sequential([keras.Input((2 * self.style_dim,)), keras.layers.Dense(64, "relu"),
                                            keras.layers.Dense(self._groupings_in_batch() or 1)], name="critic")

    def get_config(self):
        return {**super().get_config(), "aggregation": self.aggregation, "content_samples": self.content_samples,
                "cycle_weight": self.cycle_weight, "critic_weight": self.critic_weight,
                "independence_weight": self.independence_weight, "group_variance_weight": self.group_variance_weight}

    def _aggregate(self, mean, log_var, group_ids, num_groups):
        """The group's content posterior: the product of Normals, or the mixture's moments."""
        if self.aggregation == "mixture":
            return grouping.mixture_of_normals_moments(mean, log_var, group_ids, num_groups)
        return grouping.product_of_normals(mean, log_var, group_ids, num_groups)

    # Training.

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The terms of eq. 5 on flat observations (see `mlvae_tf.losses.average_group_elbo`).

        Args:
            images: `[N, *input_shape]`; group_ids: int32 `[N]` (-1: a padding row, left out), or
                `[N, K]` for a `MultiLevelVAE`'s K groupings (column 0 decides padding and `num_groups`);
            num_groups: scalar, the number of groups (the loss is per group).
            noise: optional dict of standard noise `content` `[N, content_dim]`, `style`
                `[N, style_dim]` and, for the mixture, `component` uniform `[N]`; drawn when omitted.
            num_segments: rows of the per-group tensors, `>= num_groups` (`num_groups` when
                omitted). Under XLA it must not depend on the data, or every batch recompiles:
                the pair form passes the batch size.

        Returns:
            dict of scalars `loss`, `reconstruction`, `kl_style`, `kl_content`, and each option's
            term (`cycle`, `critic`) or each grouping's content KL (`kl_<grouping>`).
        """
        # Padding rows (`to_pairs(pad_to=...)`) have group id -1: segment sums drop them, batch
        # normalisation leaves them out of its statistics, and their terms are masked out below.
        group_ids = tf.convert_to_tensor(group_ids)
        is_observed = self._first_grouping(group_ids) >= 0  # [N]
        observed = tf.cast(is_observed, tf.float32)
        encoded = self._encode(images, training=training, observed=is_observed)
        if noise is None:
            noise = self._draw_noise(tf.shape(images)[0])
        content, kls = self._sample_contents(encoded, group_ids, num_groups, num_segments, noise)
        style = distributions.reparameterize(encoded["style_mean"], encoded["style_log_var"], noise["style"])
        kl_style = distributions.kl_standard_normal(encoded["style_mean"], encoded["style_log_var"]) * observed  # [N]
        log_likelihood = self._log_likelihood(images, content, style, is_observed, training=training)  # [N]
        terms = self._elbo_terms(log_likelihood, kl_style, tf.concat(list(kls.values()), 0), num_groups)
        if self._groupings_in_batch() is not None:  # a `MultiLevelVAE`: each grouping's KL, per group of the first
            terms.update({f"kl_{name}": tf.reduce_sum(kl) / tf.cast(num_groups, tf.float32) for name, kl in kls.items()})
        segments = num_groups if num_segments is None else num_segments
        per_group = tf.reduce_sum(observed) / tf.cast(num_groups, tf.float32)  # batch terms on the ELBO's scale
        if self.cycle_weight:
            cycle = self._reverse_cycle(encoded, group_ids, num_groups, segments, noise["cycle_style"], observed,
                                        training)
            cycle = tf.reduce_sum(cycle) / tf.cast(num_groups, tf.float32)
            terms = {**terms, "loss": terms["loss"] + self.cycle_weight * cycle, "cycle": cycle}
        if self.critic_weight:
            critic = self._critic_terms(_reverse_gradient(encoded["style_mean"], self.critic_weight), group_ids,
                                        num_groups, num_segments)
            terms = {**terms, **critic, "loss": terms["loss"] + per_group * critic["critic"]}
        for name, measure in DEPENDENCE.items():
            weight = getattr(self, f"{name}_weight")
            if weight:
                dependence = self._style_dependence(encoded["style_mean"], group_ids, name, measure)
                terms = {**terms, **dependence, "loss": terms["loss"] + weight * per_group * dependence[name]}
        return terms

    def _style_dependence(self, style_mean, group_ids, name, measure):
        """A dependence term: `{name: measure(style means, the groups)}` (`DEPENDENCE`)."""
        return {name: measure(style_mean, self._first_grouping(group_ids))}

    def _sample_contents(self, encoded, group_ids, num_groups, num_segments, noise):
        """The content of every observation `[N, content_dim]` (`_content`) and each group's content
        KL, by latent: `{"content": [segments]}` (a `MultiLevelVAE` has one per grouping)."""
        segments = num_groups if num_segments is None else num_segments
        content, kl = self._content(encoded["content_mean"], encoded["content_log_var"], group_ids, segments,
                                    noise["content"], noise.get("component"))
        return content, {"content": kl}

    def _critic_terms(self, style, group_ids, num_groups, num_segments):
        """The critic's term, `{"critic": ...}`: its cross-entropy on the batch's pairs of styles."""
        segments = num_groups if num_segments is None else num_segments
        return {"critic": self._critic_cross_entropy(style, group_ids, segments)}

    def _critic_cross_entropy(self, style, group_ids, segments, head=0):
        """The critic's mean cross-entropy on pairs of the batch's style means `style` `[N, style_dim]`.

        Each observation is paired with its two partners of `grouping.near_and_far` (about half of
        the pairs share a group); the label is whether the two group ids `[N]` are equal, the
        critic's output `head` its logit, and padding rows are in no pair.
        """
        group_ids = tf.cast(group_ids, tf.int32)
        order, near, far = grouping.near_and_far(group_ids, segments)
        losses, weights = [], []
        for partner in (near, far):
            first, second = tf.gather(style, order), tf.gather(style, partner)
            a, b = tf.gather(group_ids, order), tf.gather(group_ids, partner)
            logits = self.critic(tf.concat([tf.abs(first - second), first * second], axis=1))[:, head]
            labels = tf.cast(tf.equal(a, b), tf.float32)
            losses.append(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))
            weights.append(tf.cast((a >= 0) & (b >= 0) & (order != partner), tf.float32))
        losses, weights = tf.concat(losses, 0), tf.concat(weights, 0)
        return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def _reverse_cycle(self, encoded, group_ids, num_groups, segments, style, observed, training=False):
        """The reverse cycle (Jha et al., 2018) per observation: `[N]`.

        Observation i's style `style[i]` (drawn from the prior) is decoded with the content of its
        group g and with that of the next group, g + 1 (mod the batch's groups), each the mean of the
        group's product of Normals; both decodings (their means, held constant) are encoded again, and the
        term is the L1 distance between the two style means. A style that carries no content
        comes back the same from both. With one group in the batch the two contents are one: 0.
        """
        group_mean, _ = grouping.product_of_normals(
            encoded["content_mean"], encoded["content_log_var"], group_ids, segments)
        own = tf.maximum(group_ids, 0)
        other = tf.math.floormod(own + 1, tf.maximum(tf.cast(num_groups, own.dtype), 1))
        decoded = [tf.stop_gradient(self._decoded_params(tf.gather(group_mean, rows), style)["mean"])
                   for rows in (own, other)]
        styles = [self._encode(images, training=training, observed=group_ids >= 0)["style_mean"]
                  for images in decoded]
        return tf.reduce_sum(tf.abs(styles[0] - styles[1]), axis=1) * observed

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
            kl = distributions.kl_standard_normal(group_mean, group_log_var)
            if self.content_samples == "group":  # one sample per group (noise row g), shared by its members
                sample = distributions.reparameterize(group_mean, group_log_var, noise[: tf.shape(group_mean)[0]])
                return tf.gather(sample, rows), kl
            content = distributions.reparameterize(tf.gather(group_mean, rows), tf.gather(group_log_var, rows), noise)
            return content, kl
        check = tf.debugging.assert_non_negative(
            group_ids, message="aggregation='mixture' takes no padding rows (group id -1): no `pad_to`"
        )
        with tf.control_dependencies([check]):
            member = grouping.sample_mixture_components(group_ids, segments, component)  # [N]
        content = distributions.reparameterize(tf.gather(mean, member), tf.gather(log_var, member), noise)
        return content, distributions.mixture_kl_standard_normal(content, mean, log_var, group_ids, segments)

    def _draw_noise(self, num_observations):
        """`Autoencoder._draw_noise`, and for the mixture `component` uniform `[N]` (`[N, K]` with K
        groupings: which member's Normal each content sample comes from)."""
        seed = self._next_seed()
        noise = super()._draw_noise(num_observations, seed)
        if self.aggregation == "mixture":  # one choice of member per observation (and grouping)
            groupings = self._groupings_in_batch()
            shape = (num_observations,) if groupings is None else (num_observations, groupings)
            seed = tf.random.experimental.stateless_fold_in(seed, 1)
            noise["component"] = tf.random.stateless_uniform(shape, seed, alg="philox")
        if self.cycle_weight:  # the reverse cycle's styles, from the prior
            seed = tf.random.experimental.stateless_fold_in(seed, 3)
            noise["cycle_style"] = tf.random.stateless_normal((num_observations, self.style_dim), seed, alg="philox")
        return noise

    def _xla_refusal(self):
        if self.aggregation == "mixture":
            return "needs aggregation='product': the mixture's KL uses ragged ops that XLA cannot compile."
        return None
