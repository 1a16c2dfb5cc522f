"""Grouped `tf.data` pipelines: arrays and group labels to batches of whole groups."""

import numpy as np
import tensorflow as tf

from mlvae_tf import validation

__all__ = ["grouped_dataset", "multi_grouped_dataset", "to_pairs", "largest_batch", "split_groups", "split_observations", "split_validation",
           "group_index"]


def group_index(labels, name="labels"):
    """Maps arbitrary group labels (integers with gaps, or strings such as identity names) to the
    contiguous ids that `encode_groups` and the exported group encoders take.

    Args:
        labels: `[N]` integers or strings.
        name: the argument's name in error messages.

    Returns:
        `(group_ids int32 [N] in [0, G), groups)`: `groups[g]` is the label of group `g`.

    Example:
        >>> group_ids, groups = group_index(["ann", "bob", "ann"])  # [0, 1, 0], ["ann", "bob"]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iuUSO":
        raise ValueError(f"`{name}` must be a vector of integer or string labels, got dtype {labels.dtype} and "
                         f"shape {labels.shape}.")
    try:
        groups, group_ids = np.unique(labels, return_inverse=True)
    except TypeError:
        raise ValueError(f"`{name}` mixes labels that cannot be ordered (e.g. numbers and strings).") from None
    return group_ids.astype(np.int32), groups


def _chunk_lengths(sizes, max_group_size):
    """Splits each group of `sizes[g]` into `ceil(n / max_group_size)` chunks of near-equal size.

    Returns int64 `[num_chunks]` chunk lengths, the chunks of group 0 first.
    """
    if max_group_size is None:
        return sizes.astype(np.int64)
    chunks = -(-sizes // max_group_size)  # [G] ceil
    group = np.repeat(np.arange(len(sizes)), chunks)  # [C]
    rank = np.arange(len(group)) - np.repeat(np.cumsum(chunks) - chunks, chunks)  # [C] chunk index in group
    return (sizes[group] // chunks[group] + (rank < sizes[group] % chunks[group])).astype(np.int64)


def _chunks(group_ids, max_group_size):
    """Contiguous group ids `[N]` (see `group_index`) and the chunk lengths `[num_chunks]` of the
    groups cut to at most `max_group_size`: the one chunking `grouped_dataset` and `largest_batch` share."""
    if max_group_size is not None:
        max_group_size = validation.check_positive_int(max_group_size, "max_group_size")
    ids, _ = group_index(group_ids, name="group_ids")
    return ids, _chunk_lengths(np.bincount(ids), max_group_size)


def _epoch_chunks(group_ids, chunk_lengths, seed):
    """The chunks of one epoch: `tf.RaggedTensor` [num_chunks, (members)] of observation indices.

    Without a `seed` (int64 `[2]`) the members of each group are in index order and the chunks in
    group order; with one, the members are shuffled within their group (so the chunks are a
    random partition of it) and the chunks are shuffled.
    """
    n = tf.size(group_ids, out_type=tf.int64)
    if seed is None:
        order = tf.argsort(group_ids, stable=True)  # [N] grouped, in index order
    else:
        # One sort on (group id, 32 random bits): grouped, random within (a quarter of the CPU of
        # a random permutation followed by a stable sort by group; it runs every epoch).
        noise = tf.random.stateless_uniform([n], seed, minval=0, maxval=2**32, dtype=tf.int64)
        order = tf.argsort(group_ids * 2**32 + noise)  # [N]
    chunks = tf.RaggedTensor.from_row_lengths(tf.cast(order, tf.int64), chunk_lengths)
    if seed is not None:
        num_chunks = tf.shape(chunk_lengths, out_type=tf.int64)[0]
        shuffle_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        chunks = tf.gather(chunks, tf.random.experimental.stateless_shuffle(tf.range(num_chunks), shuffle_seed))
    return chunks


def grouped_dataset(
    x,
    group_ids,
    groups_per_batch=32,
    max_group_size=None,
    shuffle=True,
    seed=None,
    drop_remainder=False,
    epoch=None,
):
    """A `tf.data.Dataset` of batches of whole groups, for `MLVAE.fit`.

    Each element is a `tf.RaggedTensor` `[groups, (observations), *x.shape[1:]]` float32. A group
    (or chunk) is never split across two batches, and every observation is used exactly once per
    epoch. Groups larger than `max_group_size` are split into `ceil(n / max_group_size)` chunks
    of near-equal size that then count as groups: the paper's subsampling (supplement section
    6), which biases the group ELBO. With `shuffle`, the chunks and the order of the groups are
    drawn anew every epoch (every iteration over the dataset). The batches depend only on
    `seed` and the epoch: the same seed gives the same batches in any process, whatever
    TensorFlow's global seed.

    Args:
        x: float array `[N, *input_shape]`.
        group_ids: `[N]` group labels, integers or strings (made contiguous with `group_index`).
        groups_per_batch: number of groups (chunks) per batch, >= 1.
        max_group_size: largest group in a batch; `None` keeps groups whole.
        shuffle: shuffle groups and observations each epoch.
        seed: int seed of the shuffling; `None` draws one.
        drop_remainder: drop a last batch with fewer than `groups_per_batch` groups.
        epoch: optional int `tf.Variable`, the 0-based epoch whose batches an iteration yields
            (with `shuffle`). Set it at the start of each epoch, e.g. from a callback's
            `on_epoch_begin`, so that a resumed run continues the sequence of batches instead of
            replaying the first epochs'. Without it, the dataset counts its own iterations.

    Returns:
        `tf.data.Dataset` with known cardinality (batches per epoch).

    Example:
        >>> ds = grouped_dataset(x, labels, groups_per_batch=32, max_group_size=10, seed=0)
        >>> batch = next(iter(ds))  # RaggedTensor [32, (<=10), 8, 8, 1]
    """
    groups_per_batch = validation.check_positive_int(groups_per_batch, "groups_per_batch")
    try:
        x = np.asarray(x)
    except ValueError as error:
        raise ValueError(f"`x` must be an array [N, *input_shape]: {error}") from None
    if x.ndim < 2:
        raise ValueError(f"`x` must have shape [N, *input_shape], got shape {x.shape}.")
    images = validation.check_images(x, x.shape[1:], name="x")
    ids, chunk_lengths = _chunks(group_ids, max_group_size)
    if len(ids) != len(x):
        raise ValueError(f"`group_ids` has length {len(ids)} but `x` has {len(x)} observations.")
    ds, num_batches = _index_batches(ids, chunk_lengths, groups_per_batch, shuffle, seed, drop_remainder, epoch)
    # One gather per batch: [groups, (members), *input_shape].
    ds = ds.map(lambda members: members.with_flat_values(tf.gather(images, members.flat_values)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(tf.data.AUTOTUNE)
    return _with_batch_sizes(ds, chunk_lengths, groups_per_batch, num_batches, shuffle)


def _with_batch_sizes(ds, chunk_lengths, groups_per_batch, num_batches, shuffle):
    """`ds`, with what the default path of `fit` pads to: its largest batch and its mean batch, in
    observations. Shuffled, any chunks can meet in a batch (`largest_batch`'s bound); unshuffled,
    the batches are the chunks in order, and their sizes are known."""
    used = min(len(chunk_lengths), num_batches * groups_per_batch)
    sizes = np.add.reduceat(chunk_lengths[:used], np.arange(0, used, groups_per_batch)) if used else np.zeros(1)
    ds._largest_batch = _largest(chunk_lengths, groups_per_batch) if shuffle else int(sizes.max())
    ds._mean_batch = float(sizes.mean())
    return ds


def _index_batches(ids, chunk_lengths, groups_per_batch, shuffle, seed, drop_remainder, epoch):
    """The batches of `grouped_dataset` as observation indices: `(dataset of tf.RaggedTensor
    [groups, (members)] int64, batches per epoch)`."""
    ids = tf.constant(ids.astype(np.int64))
    num_chunks = len(chunk_lengths)
    batch_sizes = [groups_per_batch] * (num_chunks // groups_per_batch)
    if num_chunks % groups_per_batch and not drop_remainder:
        batch_sizes.append(num_chunks % groups_per_batch)

    def batches(seed):
        """All batches of an epoch at once, without per-group tf.data overhead:
        [batches, (groups), (members)] observation indices."""
        chunks = _epoch_chunks(ids, chunk_lengths, seed)[: sum(batch_sizes)]
        return tf.data.Dataset.from_tensor_slices(
            tf.RaggedTensor.from_row_lengths(chunks, np.array(batch_sizes, np.int64))
        )

    if shuffle:
        base_seed = tf.constant(np.random.SeedSequence(seed).generate_state(2).astype(np.int64))
        if epoch is None:
            counter = tf.Variable(0, dtype=tf.int64, trainable=False)  # counts iterations over the dataset
            next_epoch = lambda: counter.assign_add(1)  # noqa: E731
        else:
            next_epoch = lambda: tf.cast(epoch, tf.int64) + 1  # noqa: E731  (the same numbering: epoch 0 is 1)
        ds = tf.data.Dataset.from_tensors(0).flat_map(
            lambda _: batches(tf.random.experimental.stateless_fold_in(base_seed, next_epoch()))
        )
    else:
        ds = batches(None)
    return ds, len(batch_sizes)


def multi_grouped_dataset(x, groupings, groups_per_batch=32, max_group_size=None, shuffle=True, seed=None,
                          drop_remainder=False, pad_to=None, epoch=None):
    """Batches for several groupings at once (`mlvae_tf.MultiLevelVAE`): `(images [N, ...], group_ids
    int32 [N, K])` pairs, column k the batch's ids of grouping k.

    Two groupings cross (every shape comes in every colour), so one batch cannot hold whole groups
    of both. The batches are those of `grouped_dataset` on the first grouping: its groups whole, or
    cut into chunks of at most `max_group_size`. Every other grouping's groups are cut to the members
    that the batch holds, and each such part counts as a group of that grouping for the batch: the
    paper's subsampling of groups (supplement section 6) applied to it, which biases its content
    posteriors towards fewer observations and counts its content KL once per part. Within a
    batch, the ids of each column are contiguous from 0, every group non-empty.

    Args:
        x: float array `[N, *input_shape]`.
        groupings: dict `{name: [N] labels}` (integers or strings), the first the batching grouping.
        groups_per_batch, max_group_size, shuffle, seed, drop_remainder, epoch: as in
            `grouped_dataset`, for the first grouping.
        pad_to: `None`, or the number of observations of every batch, as in `to_pairs`: padding
            rows are zero images with id -1 in every column, so that XLA compiles the step once
            (`largest_batch(first_grouping_labels, groups_per_batch, max_group_size)`).

    Returns:
        `tf.data.Dataset` of pairs, with known cardinality.

    Example:
        >>> ds = multi_grouped_dataset(x, {"shape": shapes, "colour": colours}, groups_per_batch=16,
        ...                            max_group_size=10, seed=0)
    """
    groups_per_batch = validation.check_positive_int(groups_per_batch, "groups_per_batch")
    if pad_to is not None:
        pad_to = validation.check_positive_int(pad_to, "pad_to")
    if not isinstance(groupings, dict) or not groupings:
        raise ValueError(f"`groupings` must be a non-empty dict {{name: labels}}, got {type(groupings).__name__}.")
    if np.ndim(x) < 2:
        raise ValueError(f"`x` must have shape [N, *input_shape], got shape {np.shape(x)}.")
    images = validation.check_images(np.asarray(x), np.shape(x)[1:], name="x")
    columns = []
    for name, labels in groupings.items():
        ids, _ = group_index(labels, name=f"groupings[{name!r}]")
        if len(ids) != len(x):
            raise ValueError(f"`groupings[{name!r}]` has length {len(ids)} but `x` has {len(x)} observations.")
        columns.append(ids)
    first, chunk_lengths = _chunks(columns[0], max_group_size)
    ds, num_batches = _index_batches(first, chunk_lengths, groups_per_batch, shuffle, seed, drop_remainder, epoch)
    others = tf.constant(np.stack(columns[1:], axis=1) if len(columns) > 1 else np.zeros((len(x), 0), np.int32))

    def pair(members):
        index = members.flat_values
        ids = [tf.cast(members.value_rowids(), tf.int32)]  # the first grouping: its chunks are the groups
        labels = tf.gather(others, index)  # [N, K - 1]
        ids += [tf.unique(labels[:, k], out_idx=tf.int32)[1] for k in range(len(columns) - 1)]
        return _padded(tf.gather(images, index), tf.stack(ids, axis=1), pad_to)

    ds = ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(tf.data.AUTOTUNE)
    return _with_batch_sizes(ds, chunk_lengths, groups_per_batch, num_batches, shuffle)


def split_groups(group_ids, fractions=(0.8, 0.1, 0.1), seed=0):
    """Splits observations into parts with disjoint groups (unseen groups at test time).

    Whole groups are assigned to parts so that each part holds about its fraction of the groups.

    Args:
        group_ids: `[N]` group labels, integers or strings.
        fractions: fractions of groups per part, summing to 1; each part gets >= 1 group.
        seed: int seed.

    Returns:
        tuple of int64 index arrays into the observations, one per part.

    Example:
        >>> train, val, test = split_groups(labels, (0.8, 0.1, 0.1), seed=0)
        >>> x_train, labels_train = x[train], labels[train]
    """
    ids, groups = group_index(group_ids, name="group_ids")
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or len(fractions) < 1 or np.any(fractions <= 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"`fractions` must be positive and sum to 1, got {fractions.tolist()}.")
    if len(groups) < len(fractions):
        raise ValueError(f"Cannot split {len(groups)} groups into {len(fractions)} parts with disjoint groups.")
    permuted = np.random.default_rng(seed).permutation(len(groups))
    bounds = np.round(np.cumsum(fractions) * len(groups)).astype(int)
    for part in range(len(bounds)):  # every part gets at least one group, and leaves one for each later part
        low = bounds[part - 1] + 1 if part else 1
        bounds[part] = min(max(bounds[part], low), len(groups) - (len(bounds) - 1 - part))
    part_of_group = np.empty(len(groups), dtype=np.int64)
    for part, (start, stop) in enumerate(zip(np.concatenate([[0], bounds[:-1]]), bounds)):
        part_of_group[permuted[start:stop]] = part
    part = part_of_group[ids]
    return tuple(np.flatnonzero(part == p) for p in range(len(fractions)))


def split_observations(num_observations, fractions=(0.7, 0.15, 0.15), seed=0):
    """Random split of observations into parts that share groups (seen groups at test time, as
    the paper's MNIST split). Returns a tuple of int64 index arrays, one per part."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or np.any(fractions <= 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"`fractions` must be positive and sum to 1, got {fractions.tolist()}.")
    order = np.random.default_rng(seed).permutation(num_observations)
    return tuple(np.split(order, (np.cumsum(fractions)[:-1] * num_observations).astype(int)))


def split_validation(x, labels, seed=0, fraction=1 / 6):
    """The paper's MNIST split (section 4): training images separated at random into train and
    validation parts, `fraction` of them for validation (MNIST's 60,000: 50,000 / 10,000).

    Returns:
        dict `{"train" | "val": (x, labels)}`.
    """
    order = np.random.default_rng(seed).permutation(len(x))
    train, val = order[: len(x) - round(fraction * len(x))], order[len(x) - round(fraction * len(x)):]
    return {"train": (x[train], labels[train]), "val": (x[val], labels[val])}


def to_pairs(dataset, pad_to=None):
    """Batches of groups as `(images [N, ...], group_ids int32 [N])` pairs instead of ragged tensors.

    The pair form is what XLA can compile (`model.compile(jit_compile=True)`), what exported graphs
    take and what distributed input uses. The conversion runs in the tf.data pipeline.

    XLA compiles the step once per batch size; batches of whole groups vary in size. With
    `pad_to`, every batch is padded to `pad_to` observations (zero images, group id -1, which
    `MLVAE` leaves out of the loss), so the step compiles once. `largest_batch` gives the size.

    Args:
        dataset: batches of groups, `tf.RaggedTensor` `[groups, (observations), ...]`.
        pad_to: `None`, or the number of observations of every batch (an int >= the largest batch;
            a larger batch raises an error when it is read).

    Example:
        >>> model.compile(optimizer="adam", jit_compile=True, steps_per_execution=10)
        >>> ds = grouped_dataset(x, labels, groups_per_batch=64, max_group_size=10)
        >>> model.fit(to_pairs(ds, pad_to=largest_batch(labels, 64, 10)), epochs=10)
    """
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(dataset, tf.data.Dataset) or not isinstance(spec, tf.RaggedTensorSpec) or spec.ragged_rank != 1:
        raise ValueError("`dataset` must be a tf.data.Dataset of ragged batches of groups [groups, (observations), "
                         f"...], as grouped_dataset yields; got {spec if spec is not None else type(dataset).__name__}.")
    if pad_to is not None:
        pad_to = validation.check_positive_int(pad_to, "pad_to")

    def pair(groups):
        return _padded(groups.flat_values, tf.cast(groups.value_rowids(), tf.int32), pad_to)

    pairs = dataset.map(pair, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return pairs.prefetch(tf.data.AUTOTUNE)  # the step then takes a ready batch, never waits on the map


def padded_pairs(dataset, pad_to):
    """Ragged batches of groups (`to_pairs`) or pairs `(images, group_ids [N] or [N, K])` as pairs
    padded to `pad_to` rows: what `fit` feeds XLA on its default path."""
    if isinstance(dataset.element_spec, tf.RaggedTensorSpec):
        return to_pairs(dataset, pad_to=pad_to)
    padded = dataset.map(lambda images, group_ids: _padded(images, group_ids, pad_to),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return padded.prefetch(tf.data.AUTOTUNE)


def _padded(images, group_ids, pad_to):
    """A pair batch `(images [n, ...], group_ids [n] or [n, K])` padded to `pad_to` rows (zero
    images, id -1), or as it is when `pad_to` is None."""
    if pad_to is None:
        return images, group_ids
    extra = pad_to - tf.shape(images)[0]
    check = tf.debugging.assert_non_negative(
        extra, message=f"`dataset` {validation.BATCH_RULES['pad_to']} ({pad_to}); pass pad_to=largest_batch(...)"
    )
    with tf.control_dependencies([check]):
        extra = tf.identity(extra)  # every pad waits for the check, so its message is the one raised
    images = tf.pad(images, [[0, extra]] + [[0, 0]] * (images.shape.rank - 1))
    group_ids = tf.pad(group_ids, [[0, extra]] + [[0, 0]] * (group_ids.shape.rank - 1), constant_values=-1)
    return (tf.ensure_shape(images, [pad_to, *images.shape[1:]]),
            tf.ensure_shape(group_ids, [pad_to, *group_ids.shape[1:]]))


def largest_batch(group_ids, groups_per_batch, max_group_size=None, num_replicas=1):
    """The most observations a `grouped_dataset` batch of these groups can hold: the sum of the
    `groups_per_batch` largest groups (chunks of at most `max_group_size`). For `to_pairs(pad_to=...)`.

    With `num_replicas` R > 1, the most one replica's part of such a batch can hold
    (`mlvae_tf.data.distribute(pad_to=...)`): `floor((L + (R - 1) M) / R)` for the whole batch's
    bound L and the largest group M, the bound of the greedy balance (`replicas.balance`)."""
    groups_per_batch = validation.check_positive_int(groups_per_batch, "groups_per_batch")
    num_replicas = validation.check_positive_int(num_replicas, "num_replicas")
    lengths = _chunks(group_ids, max_group_size)[1]
    whole = _largest(lengths, groups_per_batch)
    return min(whole, (whole + (num_replicas - 1) * int(lengths.max())) // num_replicas)


def _largest(chunk_lengths, groups_per_batch):
    """The sum of the `groups_per_batch` largest chunks: the most observations of a shuffled batch."""
    return int(np.sort(chunk_lengths)[-groups_per_batch:].sum())
