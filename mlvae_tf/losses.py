"""Pure ELBO terms of the ML-VAE (paper, eq. 3 and 5) on flat observations."""

import tensorflow as tf

__all__ = ["average_group_elbo"]


def average_group_elbo(log_likelihood, kl_style, kl_content, num_groups, kl_style_weight=1.0, kl_content_weight=1.0):
    """The batch objective of eq. 5 split into its terms, each averaged over the groups.

    ELBO_g = sum_{i in g} [log p(x_i | c_g,i, s_i) - KL(q(s_i | x_i) || p(s))] - KL(q(c_g | X_g) || p(c))
    (eq. 3); the sums over observations of the batch equal the sums over its groups.

    Args:
        log_likelihood: `[N]` reconstruction log-likelihood per observation.
        kl_style: `[N]` style KL per observation.
        kl_content: `[num_groups]` content KL per group.
        num_groups: scalar int, the number of groups in the batch.

    With unit weights, `loss = reconstruction + kl_style + kl_content = -(1/|G_b|) sum_g ELBO_g`.

    Returns:
        dict of scalars: `loss` (to minimise), `reconstruction` (negative log-likelihood per
        group), `kl_style` (per group), `kl_content` (per group).
    """
    num = tf.cast(num_groups, log_likelihood.dtype)
    reconstruction = -tf.reduce_sum(log_likelihood) / num
    style = tf.reduce_sum(kl_style) / num
    content = tf.reduce_sum(kl_content) / num
    return {
        "loss": reconstruction + kl_style_weight * style + kl_content_weight * content,
        "reconstruction": reconstruction,
        "kl_style": style,
        "kl_content": content,
    }
