"""Up-front checks of user input: a clear `ValueError` naming the argument, never a NaN later.

Shape and dtype checks are static, so they also run while tracing (export); value checks
(finite, ranges) run on concrete arrays, and in traced graphs (the exported models) as run-time
guards (`guard`). The batches that `fit` and `evaluate` read are checked in the input pipeline
(`check_batches`).
"""

import re

import numpy as np
import tensorflow as tf

__all__ = ["check_images", "check_group_ids", "check_latent", "check_same_rows", "guard", "check_positive_int",
           "check_batches", "batch_error", "GROUP_IDS_RULE", "BATCH_RULES"]


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
    x = tf.cast(x, dtype)
    if not _is_concrete(x):  # an exported graph: the signature's shape is not enforced at run time
        shape = tf.concat([tf.shape(x)[1:], tf.fill([len(input_shape) + 1], -1)], 0)[: len(input_shape) + 1]
        valid = tf.reduce_all(shape == [*input_shape, -1]) & (tf.shape(x)[0] > 0) & _all_finite(x)
        dims = "x".join(str(d) for d in input_shape)
        x = guard(x, valid, f"{name} must be a [batch, {', '.join(map(str, input_shape))}] batch of finite values, "
                            "batch >= 1", f"{name}_must_be_finite_batch_{dims}")
    return x


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
    if isinstance(num_observations, int) and n is not None and n != num_observations:
        raise ValueError(f"`{name}` has length {n} but there are {num_observations} images; give one id per image.")
    group_ids = tf.cast(group_ids, tf.int32)
    if not _is_concrete(group_ids):
        return _guard_group_ids(group_ids, num_groups, num_observations)
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


GROUP_IDS_RULE = ("group_ids must be integers in [0, num_groups), one per image, with at least one image in every "
                  "group")
GUARD_SCOPE = "group_ids_must_be_in_0_to_num_groups_with_every_group_non_empty"


def _all_finite(x):
    """Whether every value of `x` is finite, in ops that tf2onnx converts (NaN < inf is False).
    Flattened first: a reduction over the static axes would fail on a request of another rank."""
    return tf.reduce_all(tf.reshape(tf.abs(x) < np.inf, [-1]))


def guard(tensor, valid, rule, scope):
    """`tensor`, refused at run time unless `valid` (a bool scalar): the checks of exported graphs.

    TensorFlow (and TF Serving) raise `InvalidArgumentError` with `rule`. ONNX has no assertions
    (tf2onnx drops them), so a zero is added to `tensor` that comes out of a reshape that fails
    unless `valid`; ONNX Runtime's error then names its node, `scope/check`. (A reshape of
    `tensor` itself would be merged by tf2onnx with the network's next reshape, and vanish.)
    """
    check = tf.debugging.Assert(valid, [rule])
    with tf.control_dependencies([check]), tf.name_scope(scope):
        zero = tf.reshape(tf.zeros([1], tensor.dtype), tf.where(valid, 1, 2)[None], name="check")
    return tf.ensure_shape(tensor + zero, tensor.shape)


def _guard_group_ids(group_ids, num_groups=None, num_observations=None):
    """The checks of `check_group_ids` inside a graph (exported group encoders), at run time.

    A request with a negative id, a gap in the ids (an empty group, which would silently get the
    prior N(0, I)), or ids of another length than the images (`num_observations`, a tensor),
    fails with `GROUP_IDS_RULE` (see `guard`).

    Returns:
        `(group_ids int32 [N], num_groups)`; `num_groups` is `max(group_ids) + 1` when not given.
    """
    n = tf.shape(group_ids)[0]
    if num_groups is None:
        num_groups = tf.maximum(tf.reduce_max(group_ids) + 1, 0)
    valid = (n > 0) & _ids_valid(group_ids, num_groups) & (n == (n if num_observations is None else num_observations))
    return guard(group_ids, valid, GROUP_IDS_RULE, GUARD_SCOPE), num_groups


def _ids_valid(ids, num_groups):
    """Whether `ids` `[n]` are integers in [0, num_groups) with every group non-empty, in ops that
    tf2onnx converts. Out-of-range ids are counted in an extra segment (ONNX Runtime's scatter
    rejects them), so the cost is `O(n + num_groups)` whatever the ids."""
    inside = tf.clip_by_value(ids, 0, num_groups)
    sizes = tf.math.unsorted_segment_sum(tf.ones_like(ids), inside, num_groups + 1)[:-1]  # [num_groups]
    return tf.reduce_all(ids >= 0) & tf.reduce_all(ids < num_groups) & tf.reduce_all(sizes > 0)


def check_latent(x, dim, name):
    """Checks a latent batch `[N, dim]`; returns it as a float32 tensor."""
    x = _as_tensor(x, name)
    if x.shape.rank != 2 or x.shape[1] != dim:
        raise ValueError(f"`{name}` must have shape [batch, {dim}], got shape {x.shape}.")
    if not x.dtype.is_floating:
        raise ValueError(f"`{name}` must be floating point, got dtype {x.dtype.name}.")
    _check_finite(x, name)
    x = tf.cast(x, tf.float32)
    if not _is_concrete(x):  # an exported graph
        valid = (tf.shape(x)[1] == dim) & (tf.shape(x)[0] > 0) & _all_finite(x)
        x = guard(x, valid, f"{name} must be a [batch, {dim}] batch of finite values, batch >= 1",
                  f"{name}_must_be_finite_batch_{dim}")
    return x


def check_same_rows(first, second, names):
    """Checks that `first` and `second` have as many rows, now or (traced) at run time; returns `first`."""
    rows = first.shape[0], second.shape[0]
    if None not in rows and rows[0] != rows[1]:
        raise ValueError(f"`{names[0]}` has {rows[0]} rows but `{names[1]}` has {rows[1]}.")
    if _is_concrete(first):
        return first
    rule = f"{names[0]} and {names[1]} must have the same number of rows"
    return guard(first, tf.shape(first)[0] == tf.shape(second)[0], rule, rule.replace(" ", "_"))


# What the batches given to `fit` and `evaluate` must hold; each rule is checked up front from the
# dataset's `element_spec` where the spec shows it, and on every batch in the input pipeline.
BATCH_RULES = {
    "empty_group": "holds a batch with an empty group: every group of a batch needs at least one observation",
    "finite": "holds a batch with NaN or Inf images; clean or impute the data first",
    "lengths": "holds a pair batch whose images and group_ids differ in length: give one id per image",
    "ids": "holds a pair batch whose group ids are not the ids of its groups: they must be integers in "
           "[0, G) with every group non-empty (-1 marks a padding row); build batches with "
           "mlvae_tf.data.grouped_dataset (and to_pairs), whose ids these are, not labels",
    "pad_to": "holds a batch with more observations than `pad_to`",  # checked by `to_pairs`
}
_BATCH_FORMS = ("a tf.RaggedTensor [groups, (observations), *input_shape] of floats, or a pair "
                "(images float [N, *input_shape], group_ids int [N])")


def _check_spec(spec, input_shape, name, groupings=None):
    """The static checks of `check_batches`, on a dataset's `element_spec`."""
    expected = "[..., " + ", ".join(str(d) for d in input_shape) + "]"
    if groupings is not None:
        forms = f"pairs (images float [N, *input_shape], group_ids int [N, {groupings}]), one column per grouping"
        if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], tf.TensorSpec)
                and spec[1].shape.rank == 2 and spec[1].shape[1] in (None, groupings)):
            raise ValueError(f"`{name}` must yield {forms} (mlvae_tf.data.multi_grouped_dataset); got batches of "
                             f"{spec}.")
        spec = (spec[0], tf.TensorSpec(spec[1].shape[:1], spec[1].dtype))  # the checks below, per column
    if isinstance(spec, tf.RaggedTensorSpec):
        if spec.ragged_rank != 1:
            raise ValueError(f"`{name}` must yield {_BATCH_FORMS}; got ragged_rank {spec.ragged_rank}.")
        images = tf.TensorSpec(spec.shape[1:], spec.dtype)  # [(observations), *input_shape]
    elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, tf.TensorSpec) for s in spec):
        images, ids = spec
        if not ids.dtype.is_integer:
            raise ValueError(f"`{name}`: the group ids of its pair batches must be integers, got {ids.dtype.name}.")
        if ids.shape.rank not in (None, 1):
            raise ValueError(f"`{name}`: the group ids of its pair batches must be a vector [N], got shape {ids.shape}.")
        if not images.shape[:1].is_compatible_with(ids.shape[:1]):
            raise ValueError(f"`{name}` {BATCH_RULES['lengths']}; got images {images.shape} and ids {ids.shape}.")
    else:
        raise ValueError(f"`{name}` must yield {_BATCH_FORMS}; got batches of {spec}.")
    if not images.dtype.is_floating:
        raise ValueError(f"`{name}` must yield floating-point images (e.g. float32 scaled to [0, 1]), got "
                         f"{images.dtype.name}.")
    if images.shape.rank is not None and not images.shape[1:].is_compatible_with(input_shape):
        raise ValueError(f"`{name}` must yield images of shape {expected} (the model's input_shape), got "
                         f"{images.shape[1:]}.")


def check_batches(dataset, input_shape, name, groupings=None):
    """Checks the batches of groups that `fit` or `evaluate` get.

    The form, dtype and image shape are checked now, from `element_spec` (`ValueError`). Values
    (NaN, empty groups, pair ids) can only be seen batch by batch: the returned dataset checks
    each batch as it is read, and a bad one raises `InvalidArgumentError` with a rule of
    `BATCH_RULES`, which `batch_error` turns into a one-line `ValueError`.

    Returns:
        `dataset`, each batch checked in the input pipeline (outside the step, so under XLA too).
    """
    _check_spec(dataset.element_spec, input_shape, name, groupings)
    if int(dataset.cardinality()) == 0:
        raise ValueError(f"`{name}` is empty: it yields no batches.")

    def checked(*batch):
        if len(batch) == 1:  # ragged
            images, rules = batch[0].flat_values, {"empty_group": tf.reduce_all(batch[0].row_lengths() > 0)}
        else:
            images, ids = batch[0], tf.cast(batch[1], tf.int32)
            n = tf.shape(ids)[0]
            columns = [ids] if groupings is None else [ids[:, k] for k in range(groupings)]
            rules = {"lengths": tf.equal(tf.shape(images)[0], n),
                     "ids": tf.reduce_all([_pair_ids_valid(column, n) for column in columns])}
        rules["finite"] = tf.reduce_all(tf.math.is_finite(images))
        checks = [tf.debugging.Assert(ok, [f"`{name}` {BATCH_RULES[rule]}."]) for rule, ok in rules.items()]
        with tf.control_dependencies(checks):
            return tf.nest.map_structure(tf.identity, batch if len(batch) > 1 else batch[0])

    return dataset.map(checked, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _pair_ids_valid(ids, n):
    """Whether a pair batch's ids `[n]` are those of its groups, [0, G) with G <= n and every
    group non-empty, or -1 (padding rows)."""
    real = tf.boolean_mask(ids, ids != -1)
    return _ids_valid(real, tf.minimum(tf.reduce_max(tf.concat([[-1], real], 0)) + 1, n))


def batch_error(error):
    """A `ValueError` with the rule that a batch check of `check_batches` raised in `error` (a
    `tf.errors.InvalidArgumentError`), or None when `error` is another failure."""
    rules = "|".join(re.escape(rule) for rule in BATCH_RULES.values())
    found = re.search(r"(`[a-z_]+` (?:" + rules + r")[^\]\n]*)", error.message)  # Assert's "[message]"
    return ValueError(found.group(1)) if found else None
