"""The one TFP import: posteriors, priors, likelihoods and KLs.

Everything is `tfp.distributions`; `tfp.layers` (Keras 2) is never used.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from mlvae_tf import grouping

tfd = tfp.distributions

__all__ = [
    "LIKELIHOODS",
    "AGGREGATIONS",
    "normal",
    "standard_normal",
    "group_posterior",
    "reparameterize",
    "kl_standard_normal",
    "symmetrised_kl",
    "mixture_kl_standard_normal",
    "likelihood",
]

LIKELIHOODS = ("bernoulli", "normal", "normal_fixed")
AGGREGATIONS = ("product", "mixture")


def normal(mean, log_var):
    """Diagonal Normal `N(mean, exp(log_var))` over the last axis.

    `log_var` is used as given: per-observation log-variances come clamped from the encoder
    (`MLVAE.encode`), and a group's, `-log(sum of precisions)`, may rightly lie below the clamp."""
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(0.5 * log_var))


def standard_normal(dim, dtype=tf.float32):
    """The prior `N(0, I_dim)`."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([dim], dtype))


def group_posterior(mean, log_var, group_ids, num_groups):
    """q(C_G | X_G): the product of each group's Normals (eq. 7) as a `[num_groups]` batch of
    `tfd.MultivariateNormalDiag` over `d` dimensions."""
    return normal(*grouping.product_of_normals(mean, log_var, group_ids, num_groups))


def reparameterize(mean, log_var, noise):
    """`mean + exp(log_var / 2) * noise`, the reparameterised sample for given standard noise
    (`log_var` used as given, see `normal`)."""
    return mean + tf.exp(0.5 * log_var) * noise


def kl_standard_normal(mean, log_var):
    """Closed-form `KL(N(mean, exp(log_var)) || N(0, I))` summed over the last axis. `[...]`."""
    return tfd.kl_divergence(normal(mean, log_var), standard_normal(mean.shape[-1], mean.dtype))


def symmetrised_kl(mean_a, log_var_a, mean_b, log_var_b):
    """`(KL(a || b) + KL(b || a)) / 2` of two diagonal Normals, summed over the last axis. `[...]`"""
    a, b = normal(mean_a, log_var_a), normal(mean_b, log_var_b)
    return 0.5 * (tfd.kl_divergence(a, b) + tfd.kl_divergence(b, a))


def mixture_kl_standard_normal(samples, mean, log_var, group_ids, num_groups):
    """Monte-Carlo `KL(q(C_G | X_G) || N(0, I))` for the mixture of Normals (supplement, eq. 3).

    Each group's `|G|` samples (one per observation, drawn from the group's mixture) give
    `KL_g ~= 1/|G| sum_l [log q(c_l | X_G) - log p(c_l)]`, with `L = |G|` as in the paper.

    Args:
        samples: `[N, d]` content samples, one per observation, from its group's mixture.
        mean, log_var: `[N, d]` the per-observation Normals (the mixture components).
        group_ids: int `[N]`; num_groups: scalar int.

    Returns:
        `[num_groups]` KL estimates.
    """
    log_q = grouping.mixture_log_prob(samples, mean, log_var, group_ids, num_groups)  # [N]
    log_p = standard_normal(samples.shape[-1], samples.dtype).log_prob(samples)  # [N]
    sizes = grouping.group_sizes(group_ids, num_groups, samples.dtype)
    return tf.math.divide_no_nan(tf.math.unsorted_segment_sum(log_q - log_p, group_ids, num_groups), sizes)


def likelihood(name, params, event_ndims, observation_scale=1.0):
    """p(x | c, s) for decoder outputs `params`, an independent distribution over the image.

    Args:
        name: one of `LIKELIHOODS`: "bernoulli" (params `{"logits"}`), "normal" (params
            `{"mean", "log_var"}`, a learned per-pixel log-variance), "normal_fixed" (params
            `{"mean"}`, scale `observation_scale`).
        params: dict of `[N, *input_shape]` tensors from the decoder.
        event_ndims: rank of one observation (`len(input_shape)`).

    Returns:
        A `tfd.Independent` with batch shape `[N]`.
    """
    if name == "bernoulli":
        base = tfd.Bernoulli(logits=params["logits"], dtype=params["logits"].dtype)
    elif name == "normal":
        base = tfd.Normal(params["mean"], tf.exp(0.5 * grouping.clamp_log_var(params["log_var"])))
    elif name == "normal_fixed":
        base = tfd.Normal(params["mean"], tf.cast(observation_scale, params["mean"].dtype))
    else:
        raise ValueError(f"`likelihood` must be one of {LIKELIHOODS}, got {name!r}.")
    return tfd.Independent(base, reinterpreted_batch_ndims=event_ndims)
