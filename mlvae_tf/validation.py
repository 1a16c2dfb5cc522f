"""Up-front checks of user input: a clear `ValueError` naming the argument, never a NaN later.

Shape and dtype checks are static, so they also run while tracing (export); value checks
(finite, ranges) run on concrete arrays only.
"""

import numpy as np
import tensorflow as tf

__all__ = ["check_images", "check_group_ids", "check_latent", "check_positive_int", "GROUP_IDS_RULE"]


def _is_concrete(x):
    return not isinstance(x, (tf.Tensor, tf.RaggedTensor)) or tf.executing_eagerly()


def _as_tensor(x, name):
    if isinstance(x, tf.RaggedTensor):
        raise ValueError(f"`{name}` must be a dense array; pass a ragged batch to `fit`, not here.")
    try:
        return tf.convert_to_tensor(x)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` must be array-like, got {type(x).__name__}: {error}") from None


def check_positive_int(value, name):
    """Returns `value` as an int, or raises if it is not an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}.")
    return int(value)


def _check_finite(x, name):
    if _is_concrete(x) and x.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(x))):
        bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
        raise ValueError(f"`{name}` contains {bad} NaN or Inf values; clean or impute the data first.")


def check_images(x, input_shape, name="images", dtype=tf.float32):
    """Checks a batch `[N, *input_shape]` of floating-point images; returns it as a `dtype` tensor."""
    x = _as_tensor(x, name)
    expected = "[batch, " + ", ".join(str(d) for d in input_shape) + "]"
    if x.shape.rank != len(input_shape) + 1:
        raise ValueError(f"`{name}` must have shape {expected} (rank {len(input_shape) + 1}), got shape {x.shape}.")
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"`{name}` must have shape {expected}, got shape {x.shape}.")
    if not x.dtype.is_floating:
        raise ValueError(
            f"`{name}` must be floating point (e.g. float32 scaled to [0, 1]), got dtype {x.dtype.name}."
        )
    if _is_concrete(x) and x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty: it needs at least one observation.")
    _check_finite(x, name)
    return tf.cast(x, dtype)


def check_group_ids(group_ids, num_observations, num_groups=None, name="group_ids"):
    """Checks int group ids `[N]` in `[0, num_groups)` with no empty group.

    Returns:
        `(group_ids as int32 tensor, num_groups)`; `num_groups` is `max + 1` when not given (a
        tensor while tracing, where the same checks run in the graph: `_guard_group_ids`).
    """
    group_ids = _as_tensor(group_ids, name)
    if not group_ids.dtype.is_integer:
        raise ValueError(f"`{name}` must be integers in [0, num_groups), got dtype {group_ids.dtype.name}.")
    if group_ids.shape.rank != 1:
        raise ValueError(f"`{name}` must be a vector [batch], got shape {group_ids.shape}.")
    n = group_ids.shape[0]
    if n is not None and num_observations is not None and n != num_observations:
        raise ValueError(f"`{name}` has length {n} but there are {num_observations} images; give one id per image.")
    group_ids = tf.cast(group_ids, tf.int32)
    if not _is_concrete(group_ids):
        return _guard_group_ids(group_ids, num_groups)
    ids = group_ids.numpy()
    if ids.size and ids.min() < 0:
        raise ValueError(f"`{name}` must be >= 0, got {ids.min()}.")
    if num_groups is None:
        num_groups = int(ids.max()) + 1 if ids.size else 0
    elif ids.size and ids.max() >= num_groups:
        raise ValueError(f"`{name}` must be < num_groups={num_groups}, got {ids.max()}.")
    empty = np.flatnonzero(np.bincount(ids, minlength=num_groups) == 0)
    if empty.size:
        raise ValueError(
            f"group {empty[0]} has no observations ({empty.size} empty groups): `{name}` must cover every "
            f"group in [0, {num_groups}) with at least one observation; renumber labels with "
            "`mlvae_tf.data.group_index(labels)`."
        )
    return group_ids, num_groups


GROUP_IDS_RULE = "group_ids must be integers in [0, num_groups) with at least one image in every group"
GUARD_SCOPE = "group_ids_must_be_in_0_to_num_groups_with_every_group_non_empty"


def _guard_group_ids(group_ids, num_groups=None):
    """The checks of `check_group_ids` inside a graph (exported group encoders), at run time.

    A request with a negative id, or a gap in the ids (an empty group, which would silently get
    the prior N(0, I)), fails: TensorFlow (and TF Serving) raise `InvalidArgumentError` with
    `GROUP_IDS_RULE`. ONNX has no assertions (tf2onnx drops them), so the ids also pass through a
    reshape that fails on bad ids; ONNX Runtime's error names its node, `GUARD_SCOPE/check`.

    Returns:
        `(group_ids int32 [N], num_groups)`; `num_groups` is `max(group_ids) + 1` when not given.
    """
    n = tf.shape(group_ids)[0]
    if num_groups is None:
        num_groups = tf.maximum(tf.reduce_max(group_ids) + 1, 0)
    # Out-of-range ids are counted in an extra segment: ONNX Runtime's scatter rejects them.
    inside = tf.clip_by_value(group_ids, 0, num_groups)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(group_ids), inside, num_groups + 1)[:-1]  # [G]
    valid = tf.reduce_all([n > 0, tf.reduce_all(group_ids >= 0), tf.reduce_all(group_ids < num_groups),
                           tf.reduce_all(sizes > 0)])
    check = tf.debugging.Assert(valid, [GROUP_IDS_RULE])
    with tf.control_dependencies([check]), tf.name_scope(GUARD_SCOPE):
        group_ids = tf.reshape(group_ids, tf.where(valid, n, n + 1)[None], name="check")  # fails unless valid
    return tf.ensure_shape(group_ids, [None]), num_groups


def check_latent(x, dim, name):
    """Checks a latent batch `[N, dim]`; returns it as a float32 tensor."""
    x = _as_tensor(x, name)
    if x.shape.rank != 2 or x.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape [batch, {dim}], got shape {x.shape}.")
    if not x.dtype.is_floating:
        raise ValueError(f"`{name}` must be floating point, got dtype {x.dtype.name}.")
    _check_finite(x, name)
    return tf.cast(x, tf.float32)
