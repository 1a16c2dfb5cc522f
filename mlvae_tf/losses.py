"""Pure ELBO terms of the ML-VAE (paper, eq. 3 and 5) on flat observations."""

import tensorflow as tf

__all__ = ["average_group_elbo", "pair_penalty", "group_dependence", "group_variance"]


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


def pair_penalty(pair_kl, is_pair, pair_group, num_observations, num_groups, num_segments=None):
    """The regularised VAE's penalty (supplement section 8, eq. 18) on the ELBO's per-group scale.

    Eq. 18 averages the ELBO over observations and subtracts
    lambda * (1/|G_b|) sum_g mean_{pairs of g} symKL; multiplied by |N|/|G_b| (observations per
    group of the batch) so that it adds to `average_group_elbo`'s per-group terms, it is
    (|N| / |G_b|^2) sum_g mean_{pairs of g} symKL. A group of one has no pair and adds 0.

    Args:
        pair_kl: `[P]` symmetrised KL of each candidate pair; is_pair: bool `[P]`, the real ones.
        pair_group: int `[P]` the group of each pair.
        num_observations, num_groups: scalars, the batch's observed rows and groups.
        num_segments: rows of the per-group sums (`num_groups` when omitted; static under XLA).

    Returns:
        scalar, to be weighted by lambda.
    """
    segments = num_groups if num_segments is None else num_segments
    weight = tf.cast(is_pair, pair_kl.dtype)
    totals = tf.math.unsorted_segment_sum(pair_kl * weight, pair_group, segments)  # [segments]
    counts = tf.math.unsorted_segment_sum(weight, pair_group, segments)
    num_groups = tf.cast(num_groups, pair_kl.dtype)
    return tf.cast(num_observations, pair_kl.dtype) / num_groups**2 * tf.reduce_sum(tf.math.divide_no_nan(totals, counts))


def group_dependence(features, group_ids, bandwidth=None):
    """HSIC (Gretton et al., 2005; the biased estimator) between rows and their group membership.

    HSIC = tr(K H L H) / n^2 with K_ij = exp(-|f_i - f_j|^2 / (2 bandwidth^2)) on the features,
    L_ij = [g_i = g_j] on the groups and H the centring matrix: 0 when the features are spread
    alike in every group (as the kernel sees them), larger the more a row's features tell its
    group. Rows with a negative group id (padding) are left out.

    Args:
        features: float `[N, d]`; group_ids: int `[N]`.
        bandwidth: the Gaussian kernel's width; None: the features' own scale, 2 bandwidth^2 =
            the mean squared distance between two rows (held constant in the gradient), so that
            the kernel neither sees every pair as far apart nor as equal, whatever the scale.

    Returns:
        scalar.
    """
    observed = tf.cast(group_ids >= 0, features.dtype)  # [N]
    mask = observed[:, None] * observed[None, :]
    n = tf.maximum(tf.reduce_sum(observed), 1.0)
    squares = tf.reduce_sum(features**2, axis=1)
    distances = tf.maximum(squares[:, None] + squares[None, :] - 2.0 * tf.matmul(features, features, transpose_b=True), 0.0)
    if bandwidth is None:
        scale = tf.stop_gradient(tf.reduce_sum(distances * mask) / tf.maximum(n * (n - 1.0), 1.0))
    else:
        scale = 2.0 * bandwidth**2
    k = tf.exp(-distances / tf.maximum(scale, 1e-12)) * mask
    same = tf.cast(tf.equal(group_ids[:, None], group_ids[None, :]), features.dtype) * mask
    rows_k, rows_l = tf.reduce_sum(k, axis=1), tf.reduce_sum(same, axis=1)
    return (tf.reduce_sum(k * same) / n**2 - 2.0 * tf.reduce_sum(rows_k * rows_l) / n**3
            + tf.reduce_sum(k) * tf.reduce_sum(same) / n**4)


def group_variance(features, group_ids, ridge=1e-3):
    """The share of the rows' variance that lies between their groups: Pillai's trace over `d`.

    V = tr(S_t^-1 S_b) / d, with S_t the rows' covariance and S_b = sum_g n_g (m_g - m)(m_g - m)^T / n
    the covariance of their group means m_g (n_g rows each): 0 when every group has the same mean,
    1 when the rows of a group are all equal. Without the ridge it is unchanged by any invertible
    linear map of the features (with it, by any scaling): it measures what a linear classifier can
    read of the groups, whatever the features' scale. Without any dependence it is about
    (G - 1) / (n - 1) (G groups of n rows).
    Rows with a negative group id (padding) are left out.

    Args:
        features: float `[N, d]`; group_ids: int `[N]`, below N (the batch's own ids).
        ridge: S_t + ridge * tr(S_t) / d * I is inverted, so that a dimension without variance
            (a collapsed style) gives no infinity.

    Returns:
        scalar in [0, 1].
    """
    features = tf.cast(features, tf.float32)  # a Cholesky factor in float32, whatever the policy
    group_ids = tf.cast(group_ids, tf.int32)
    observed = tf.cast(group_ids >= 0, tf.float32)
    n = tf.maximum(tf.reduce_sum(observed), 1.0)
    dims = tf.cast(tf.shape(features)[1], tf.float32)
    centred = (features - tf.reduce_sum(features * observed[:, None], 0) / n) * observed[:, None]  # [N, d]
    total = tf.matmul(centred, centred, transpose_a=True) / n  # [d, d]
    ids = tf.maximum(group_ids, 0)  # padding rows are zero in `centred` and `observed`
    sums = tf.math.unsorted_segment_sum(centred, ids, tf.shape(features)[0])  # [N, d]: n_g (m_g - m)
    counts = tf.math.unsorted_segment_sum(observed, ids, tf.shape(features)[0])  # [N]
    between = tf.matmul(tf.math.divide_no_nan(sums, counts[:, None]), sums, transpose_a=True) / n  # [d, d]
    shift = ridge * tf.linalg.trace(total) / dims + 1e-12
    factor = tf.linalg.cholesky(total + shift * tf.eye(tf.shape(features)[1]))
    return tf.linalg.trace(tf.linalg.cholesky_solve(factor, between)) / dims
