"""Group aggregation of per-observation Normals with segment ops.

Pure tensor functions: no Keras, no TFP, no Python loops over a batch. Observations are flat
`[N, d]` tensors; `group_ids` (int32 `[N]`, values in `[0, num_groups)`) says which group each
belongs to, and `num_groups` is always given explicitly so that the cost is linear in `N`
whatever the group sizes. The segment sums drop an id of -1 (a padding row of
`mlvae_tf.data.to_pairs(pad_to=...)`); the mixture functions take no padding.
"""

import math

import tensorflow as tf

__all__ = [
    "LOG_VAR_MIN",
    "LOG_VAR_MAX",
    "clamp_log_var",
    "group_sizes",
    "product_of_normals",
    "mixture_of_normals_moments",
    "sample_mixture_components",
    "mixture_log_prob",
    "consecutive_pairs",
    "near_and_far",
]

# Per-observation log-variances are clamped to this range before any exp(): precisions stay
# within [exp(-10), exp(10)], so sums over groups of millions of observations stay finite in float32.
LOG_VAR_MIN = -10.0
LOG_VAR_MAX = 10.0


def clamp_log_var(log_var):
    """Clamps log-variances to `[LOG_VAR_MIN, LOG_VAR_MAX]` with a straight-through gradient.

    The value is `clip(log_var)`; the gradient is that of the identity, so a head that drifts
    outside the range still gets the gradient of every term (the KL's pulls it back), where
    `tf.clip_by_value` would give it none.
    """
    return log_var + tf.stop_gradient(tf.clip_by_value(log_var, LOG_VAR_MIN, LOG_VAR_MAX) - log_var)


def group_sizes(group_ids, num_groups, dtype=tf.float32):
    """Number of observations in each group. Returns `[num_groups]`."""
    return tf.math.unsorted_segment_sum(tf.ones_like(group_ids, dtype=dtype), group_ids, num_groups)


def product_of_normals(mean, log_var, group_ids, num_groups):
    """Normalised product of the diagonal Normals of each group (paper, eq. 7).

    precision_g = sum_{i in g} 1 / var_i
    mean_g = (sum_{i in g} mean_i / var_i) / precision_g

    Computed in precision space on clamped log-variances, so there is no division by a
    small number. A group with no observations gets the prior N(0, I).

    Args:
        mean: `[N, d]` per-observation means.
        log_var: `[N, d]` per-observation log-variances.
        group_ids: int `[N]` in `[0, num_groups)`, or -1 for a padding row (left out).
        num_groups: scalar int.

    Returns:
        `(group_mean, group_log_var)`, each `[num_groups, d]`.
    """
    precision = tf.exp(-clamp_log_var(log_var))  # [N, d]
    precision_sum = tf.math.unsorted_segment_sum(precision, group_ids, num_groups)  # [G, d]
    weighted_sum = tf.math.unsorted_segment_sum(mean * precision, group_ids, num_groups)  # [G, d]
    # Empty groups: precision 1 and mean 0, i.e. the prior.
    precision_sum = tf.where(precision_sum > 0.0, precision_sum, tf.ones_like(precision_sum))
    return weighted_sum / precision_sum, -tf.math.log(precision_sum)


def mixture_of_normals_moments(mean, log_var, group_ids, num_groups):
    """Mean and log-variance of the equal-weight mixture of each group's Normals.

    The moment-matched Normal of supplement section 1's mixture:
    mean_g = avg_i mean_i, var_g = avg_i (var_i + mean_i^2) - mean_g^2.

    Returns:
        `(group_mean, group_log_var)`, each `[num_groups, d]`.
    """
    count = group_sizes(group_ids, num_groups, mean.dtype)[:, None]  # [G, 1]
    sizes = tf.maximum(count, 1.0)
    var = tf.exp(clamp_log_var(log_var))
    group_mean = tf.math.unsorted_segment_sum(mean, group_ids, num_groups) / sizes
    second = tf.math.unsorted_segment_sum(var + tf.square(mean), group_ids, num_groups) / sizes
    group_var = tf.maximum(second - tf.square(group_mean), tf.exp(LOG_VAR_MIN))
    # Empty groups: the prior N(0, I).
    group_log_var = tf.where(count > 0.0, tf.math.log(group_var), tf.zeros_like(group_var))
    return group_mean, group_log_var


def _group_layout(group_ids, num_groups):
    """Observations sorted by group: `(order [N], starts [G], sizes [G])`, all int32."""
    group_ids = tf.cast(group_ids, tf.int32)
    order = tf.argsort(group_ids, stable=True)  # [N], members of group g are contiguous
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(group_ids), group_ids, num_groups)  # [G]
    starts = tf.cumsum(sizes, exclusive=True)  # [G]
    return order, starts, sizes


def sample_mixture_components(group_ids, num_groups, uniform):
    """Draws, for each observation, one member of its own group uniformly at random.

    Args:
        group_ids: int `[N]`.
        num_groups: scalar int.
        uniform: `[N]` floats in `[0, 1)`, the randomness (so that tests can fix it).

    Returns:
        int32 `[N]` indices of the chosen members (rows of the flat batch).
    """
    order, starts, sizes = _group_layout(group_ids, num_groups)
    group_ids = tf.cast(group_ids, tf.int32)
    size = tf.gather(sizes, group_ids)  # [N]
    offset = tf.minimum(tf.cast(uniform * tf.cast(size, uniform.dtype), tf.int32), size - 1)
    return tf.gather(order, tf.gather(starts, group_ids) + offset)


def mixture_log_prob(samples, mean, log_var, group_ids, num_groups):
    """Log-density of each sample under the equal-weight mixture of its own group's Normals.

    log q(c_l | X_g) = log (1/|g|) sum_{j in g} N(c_l; mean_j, var_j), for the group g of l.
    Evaluates every (sample, member) pair of a group: O(sum_g |g|^2) work.

    Args:
        samples: `[N, d]`, sample l belongs to the group of observation l.
        mean, log_var: `[N, d]` the mixture components (one per observation).
        group_ids: int `[N]`.
        num_groups: scalar int.

    Returns:
        `[N]` log-densities.
    """
    order, starts, sizes = _group_layout(group_ids, num_groups)
    group_ids = tf.cast(group_ids, tf.int32)
    pairs = tf.ragged.range(tf.gather(starts, group_ids), tf.gather(starts + sizes, group_ids))
    sample_index = tf.cast(pairs.value_rowids(), tf.int32)  # [P], P = sum_g |g|^2
    member_index = tf.gather(order, pairs.flat_values)  # [P]
    log_var = clamp_log_var(log_var)
    diff = tf.gather(samples, sample_index) - tf.gather(mean, member_index)  # [P, d]
    lv = tf.gather(log_var, member_index)
    log_normal = -0.5 * tf.reduce_sum(
        tf.square(diff) * tf.exp(-lv) + lv + math.log(2.0 * math.pi),
        axis=-1,
    )  # [P]
    num_samples = tf.shape(samples)[0]
    peak = tf.math.unsorted_segment_max(log_normal, sample_index, num_samples)  # [N]
    total = tf.math.unsorted_segment_sum(tf.exp(log_normal - tf.gather(peak, sample_index)), sample_index, num_samples)
    size = tf.cast(tf.gather(sizes, group_ids), samples.dtype)
    return peak + tf.math.log(total) - tf.math.log(size)


def consecutive_pairs(group_ids, num_groups):
    """Disjoint pairs of consecutive members within each group: its 1st and 2nd observations (in
    batch order), its 3rd and 4th, ...; a group's last member is left out when its size is odd
    (supplement section 8, eq. 18). Static shapes (one row per observation), so XLA compiles it.

    Args:
        group_ids: int `[N]` in `[0, num_groups)`, or -1 for a padding row (in no pair).
        num_groups: scalar int.

    Returns:
        `(first, second, is_pair, pair_group)`, each `[N]`: where `is_pair[k]`, rows `first[k]`
        and `second[k]` of the batch form a pair of group `pair_group[k]`.
    """
    group_ids = tf.cast(group_ids, tf.int32)
    n = tf.shape(group_ids)[0]
    key = tf.where(group_ids >= 0, group_ids, num_groups)  # [N], padding rows sorted last
    order = tf.argsort(key, stable=True)  # [N]
    sorted_key = tf.gather(key, order)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(key), key, num_groups + 1)  # [G + 1]
    position = tf.range(n) - tf.gather(tf.cumsum(sizes, exclusive=True), sorted_key)  # within its group
    is_pair = (position % 2 == 0) & (position + 1 < tf.gather(sizes, sorted_key)) & (sorted_key < num_groups)
    second = tf.gather(order, tf.minimum(tf.range(n) + 1, n - 1))
    return order, second, is_pair, tf.minimum(sorted_key, num_groups - 1)


def near_and_far(group_ids, segments):
    """Two partners for every observation, for pairs that share a group and pairs that do not.

    The batch sorted by group (padding rows last): row p's near partner is row p + 1 (its group's
    next member, but for a group's last), its far partner the row as many places further on as its
    group is large (another group's, unless the batch has one group), cyclically.

    Args:
        group_ids: int32 `[N]` in `[0, segments)`, or -1 for a padding row.
        segments: scalar int >= the number of groups (a constant under XLA: the batch size).

    Returns:
        `(order, near, far)`, int32 `[N]` each: rows `order[p]` and `near[p]`, and `order[p]` and
        `far[p]`, are the pairs (a row can be its own partner at the end of the batch).
    """
    n = tf.shape(group_ids)[0]
    segments = tf.cast(segments, tf.int32)
    key = tf.where(group_ids >= 0, group_ids, segments)  # padding rows sorted last
    order = tf.argsort(key, stable=True)  # [N]
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(key), key, segments + 1)  # [segments + 1]
    position = tf.range(n)
    near = tf.gather(order, tf.minimum(position + 1, n - 1))
    far = tf.gather(order, tf.math.floormod(position + tf.gather(sizes, tf.gather(key, order)), n))
    return order, near, far
