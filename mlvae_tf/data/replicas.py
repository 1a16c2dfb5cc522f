"""Batches of whole groups for `tf.distribute`: each replica gets whole groups of the global batch.

Keras splits a batch along its first axis across replicas; for pairs `(images [N], group_ids [N])`
that axis is the observations, so a group could be cut in two and each half get its own, wrong
content posterior. `distribute` instead hands each replica whole groups of the global batch,
balanced by observation count, and the models divide the loss by the global batch's number of
groups (`GroupedModel.train_step`), so that the summed gradients of the replicas are the gradient
of the global batch's average group ELBO.
"""

import tensorflow as tf

from mlvae_tf import validation
from mlvae_tf.data.grouped import _padded

__all__ = ["balance", "owners", "replica_batch", "distribute"]


def balance(sizes, num_replicas):
    """Assigns groups to replicas so that their observation counts are balanced.

    Greedy, largest group first, each to the replica with the fewest observations so far (ties: the
    lowest replica): no replica ends with more than `sum(sizes) / num_replicas + max(sizes)`, and
    any two differ by at most `max(sizes)`.

    Args:
        sizes: int `[G]` observations per group.
        num_replicas: int, R.

    Returns:
        int32 `[G]`, the replica of each group.
    """
    sizes = tf.cast(sizes, tf.int64)
    order = tf.argsort(-sizes, stable=True)  # [G] largest first

    def assign(i, loads, owner):
        group = order[i]
        replica = tf.argmin(loads, output_type=tf.int32)
        loads = tf.tensor_scatter_nd_add(loads, [[replica]], [sizes[group]])
        return i + 1, loads, tf.tensor_scatter_nd_update(owner, [[group]], [replica])

    start = (tf.constant(0), tf.zeros([num_replicas], tf.int64), tf.zeros_like(sizes, tf.int32))
    return tf.while_loop(lambda i, *_: i < tf.size(sizes), assign, start)[2]


def _flat(batch):
    """A batch's `(images [N, ...], group_ids int32 [N] or [N, K], first grouping's ids [N])`."""
    images, group_ids = (batch.flat_values, batch.value_rowids()) if isinstance(batch, tf.RaggedTensor) else batch
    group_ids = tf.cast(group_ids, tf.int32)
    return images, group_ids, group_ids if group_ids.shape.rank == 1 else group_ids[:, 0]


def owners(batch, num_replicas):
    """The replica of each group of a global batch (`balance` of the first grouping's group
    sizes): int32 `[G]`. Padding rows (-1) count for no group."""
    _, _, first = _flat(batch)
    if isinstance(batch, tf.RaggedTensor):
        num_groups = tf.cast(batch.nrows(), tf.int32)
    else:
        num_groups = tf.maximum(tf.reduce_max(first) + 1, 0)
    return balance(tf.math.unsorted_segment_sum(tf.ones_like(first), first, num_groups), num_replicas)


def replica_batch(batch, replica, num_replicas, pad_to=None, owner=None):
    """Replica `replica`'s part of a global batch of groups: the whole groups `balance` gives it.

    Args:
        batch: a `tf.RaggedTensor` `[groups, (observations), ...]`, or a pair `(images [N, ...],
            group_ids int [N] or [N, K])` (-1: padding, left out; column 0 decides the groups).
        replica: int scalar in `[0, num_replicas)`.
        num_replicas: int, R.
        pad_to: for pairs, the rows of every part (zero images, id -1), or None.
        owner: `owners(batch, num_replicas)`, computed once for all the batch's parts; computed
            here when None.

    Returns:
        the part in the batch's form, its group ids contiguous from 0 in their order in the batch;
        a part of a ragged batch is ragged. A replica may get no group (a batch of fewer groups
        than replicas): an empty batch.
    """
    ragged = isinstance(batch, tf.RaggedTensor)
    images, group_ids, first = _flat(batch)
    owner = owners(batch, num_replicas) if owner is None else owner  # [G]
    rows = tf.where((first >= 0) & (tf.gather(owner, tf.maximum(first, 0)) == replica))[:, 0]
    images, group_ids = tf.gather(images, rows), tf.gather(group_ids, rows)
    columns = [group_ids] if group_ids.shape.rank == 1 else tf.unstack(group_ids, axis=1)
    columns = [tf.unique(column, out_idx=tf.int32)[1] for column in columns]  # contiguous, in order
    if ragged:
        num_local = tf.cast(tf.maximum(tf.reduce_max(columns[0]) + 1, 0), tf.int64)
        return tf.RaggedTensor.from_value_rowids(images, tf.cast(columns[0], tf.int64), nrows=num_local)
    group_ids = columns[0] if group_ids.shape.rank == 1 else tf.stack(columns, axis=1)
    return _padded(images, group_ids, pad_to)


def distribute(dataset, strategy=None, pad_to=None):
    """A dataset of global batches of groups as a `tf.distribute.DistributedDataset` whose replicas
    each get whole groups (`replica_batch`), for `fit` and `evaluate` under a strategy.

    `MLVAE.fit` and `evaluate` call it themselves when the model was built under a strategy of
    several replicas; call it to pass a tighter `pad_to` or another strategy. Every worker of a
    `MultiWorkerMirroredStrategy` must read the same global batches: give `grouped_dataset` a
    `seed`. Each worker reads every global batch and keeps its replicas' parts.

    Args:
        dataset: `tf.data.Dataset` of global batches, ragged or pairs (`grouped_dataset`,
            `to_pairs`, `multi_grouped_dataset`).
        strategy: a `tf.distribute.Strategy`; the current one when None.
        pad_to: rows of every replica's pair batch. Pairs padded to one size keep a size (so that
            XLA compiles once): by default the global batch's, always enough;
            `largest_batch(..., num_replicas=R)` is a tighter bound.

    Returns:
        `tf.distribute.DistributedDataset`: one step of it is one global batch.

    Example:
        >>> strategy = tf.distribute.MirroredStrategy()
        >>> ds = distribute(grouped_dataset(x, labels, groups_per_batch=64, seed=0), strategy)
    """
    strategy = strategy or tf.distribute.get_strategy()
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"`dataset` must be a tf.data.Dataset of batches of groups, got {type(dataset).__name__}.")
    if pad_to is not None:
        pad_to = validation.check_positive_int(pad_to, "pad_to")
    elif not isinstance(spec, tf.RaggedTensorSpec):
        pad_to = tf.nest.flatten(spec)[0].shape[0]  # a padded batch's size, or None
    num_replicas = strategy.num_replicas_in_sync

    def dataset_fn(context):
        local = num_replicas // context.num_input_pipelines  # replicas of this worker
        first = context.input_pipeline_id * local

        def parts(*batch):
            batch = batch[0] if len(batch) == 1 else batch
            owner = owners(batch, num_replicas)  # once per global batch, for all its parts
            return tf.data.Dataset.range(first, first + local).map(
                lambda replica: replica_batch(batch, tf.cast(replica, tf.int32), num_replicas, pad_to, owner))

        # Successive elements go to the worker's successive replicas.
        return dataset.flat_map(parts).prefetch(tf.data.AUTOTUNE)

    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    # Steps per epoch for Keras: TF would count a worker's elements, one per replica, as steps.
    distributed._cardinality = int(dataset.cardinality())
    return distributed
