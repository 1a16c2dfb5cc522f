"""TFDS data sets grouped by one of their features, in memory or streamed.

`from_tfds("mnist", "label")` groups MNIST by digit, `from_tfds("grouped_shapes", "shape")` the
offline shapes by shape, a face data set by identity. Small splits are read into memory and
batched exactly as `grouped_dataset` does (every observation once per epoch, groups whole or in
random chunks). Splits too large for memory are grouped as a stream by tf.data itself
(`group_by_window` on the key): memory stays bounded by `max_group_size` images per distinct key,
but a group then appears as several windows (chunks) within an epoch and a window holds the
observations that happened to arrive together. Like chunking, this biases the group ELBO
(supplement, section 6), and more so when the stream is shuffled only within a buffer.
"""

import contextlib
import os
import sys

import numpy as np
import tensorflow as tf

from mlvae_tf import validation
from mlvae_tf.data.grouped import grouped_dataset, split_validation

__all__ = ["from_tfds", "load_tfds_arrays", "mnist_splits", "mnist_datasets", "MAX_IN_MEMORY_BYTES",
           "DataUnavailableError", "DOWNLOAD_RETRIES"]

MAX_IN_MEMORY_BYTES = 2 * 1024**3  # splits larger than this are streamed when `in_memory=None`
# TFDS retries a file 10 times with exponential backoff: minutes on a machine without network.
# Two retries still ride out a transient error and fail an offline machine within seconds.
DOWNLOAD_RETRIES = 2


class DataUnavailableError(OSError):
    """A TFDS data set that is not prepared in its `data_dir` and cannot be downloaded."""


@contextlib.contextmanager
def _download_retries(retries):
    from tensorflow_datasets.core.download import downloader

    saved = downloader.MAX_RETRIES  # read by TFDS at each request
    downloader.MAX_RETRIES = min(saved, retries)
    try:
        yield
    finally:
        downloader.MAX_RETRIES = saved


def _prepare(builder):
    """`builder.download_and_prepare()`, failing fast with one line where the download cannot happen.
    Off a terminal (a log file, a pipe), without TFDS's progress bars, which redraw with carriage returns."""
    if not sys.stderr.isatty():
        import tensorflow_datasets as tfds

        tfds.display_progress_bar(False)
    try:
        with _download_retries(DOWNLOAD_RETRIES):
            builder.download_and_prepare()
    except OSError as error:  # requests' ConnectionError, an unreachable or refused host, a full disk
        cause = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        root = os.path.dirname(os.path.dirname(builder.data_dir))  # <data_dir>/<name>/<version>
        raise DataUnavailableError(
            f"TFDS data set {builder.name!r} is not prepared in {root} and could not be downloaded ({cause}). "
            f"Prepare it where there is network (tfds.builder({builder.name!r}, data_dir=DIR).download_and_prepare()) "
            "and copy DIR to this machine, then pass data_dir=DIR (the config key data.data_dir)."
        ) from error


def _builder(name_or_builder, data_dir, download):
    import tensorflow_datasets as tfds

    if isinstance(name_or_builder, str):
        if name_or_builder.split(":")[0].split("/")[0] == "grouped_shapes":
            from mlvae_tf.data import grouped_shapes  # noqa: F401  (registers the builder)
        try:
            builder = tfds.builder(name_or_builder, data_dir=data_dir)
        except tfds.core.registered.DatasetNotFoundError as error:
            first = str(error).strip().splitlines()[0]  # TFDS then lists every data set it knows
            raise ValueError(f"`name_or_builder`: no TFDS data set {name_or_builder!r} ({first})") from None
    elif isinstance(name_or_builder, tfds.core.DatasetBuilder):
        builder = name_or_builder
    else:
        raise ValueError(f"`name_or_builder` must be a TFDS name or DatasetBuilder, got {type(name_or_builder).__name__}.")
    if download:
        _prepare(builder)
    return builder


def _check_features(builder, group_key, image_key):
    features = builder.info.features
    keys = group_key if isinstance(group_key, list) else [group_key]
    for key, role in [(key, "group_key") for key in keys] + [(image_key, "image_key")]:
        if key not in features:
            raise ValueError(f"`{role}`: {builder.name} has no feature {key!r}; its features are {sorted(features)}.")
    for key in keys:
        group = features[key]
        if tuple(group.shape) != () or not group.tf_dtype.is_integer:
            raise ValueError(f"`group_key`: feature {key!r} of {builder.name} must be a scalar integer (a class "
                             f"label or id), got shape {tuple(group.shape)} and dtype {group.tf_dtype.name}.")
    image = features[image_key]
    if None in tuple(image.shape):
        raise ValueError(f"`image_key`: feature {image_key!r} must have a fixed shape, got {tuple(image.shape)}.")


def _to_float(image):
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    return tf.cast(image, tf.float32)


def _split_bytes(builder, split, image_key):
    """Estimated float32 bytes of a split, or None when TFDS does not know its size (e.g. mocked)."""
    try:
        count = builder.info.splits[split].num_examples
    except (KeyError, ValueError, AssertionError):
        return None
    return count * 4 * int(np.prod(builder.info.features[image_key].shape))


def _empty(builder, split):
    return ValueError(f"`split`: {builder.name} split {split!r} is empty.")


def _as_dataset(builder, split, **kwargs):
    try:
        return builder.as_dataset(split=split, **kwargs)
    except ValueError as error:
        if "corresponds to no data" in str(error):
            raise _empty(builder, split) from None
        raise


def _read_arrays(builder, split, group_key, image_key):
    """`(images float32 [N, ...] in [0, 1], keys int [N])` of a whole split; for a list of group
    keys, `keys` is a dict `{key: int [N]}`."""
    ds = _as_dataset(builder, split).map(lambda example: (example[image_key], {key: example[key] for key in (
        group_key if isinstance(group_key, list) else [group_key])}))
    chunks = list(ds.batch(4096).as_numpy_iterator())  # not batch_size=-1: it needs known split sizes
    if not chunks:
        raise _empty(builder, split)
    images = np.concatenate([images for images, _ in chunks])
    keys = {key: np.concatenate([keys[key] for _, keys in chunks]) for key in chunks[0][1]}
    keys = keys if isinstance(group_key, list) else keys[group_key]
    images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return images, keys


def load_tfds_arrays(name_or_builder, group_key, split="train", image_key="image", data_dir=None, download=True):
    """A TFDS split read into memory: `(images float32 [N, ...] in [0, 1], group labels int [N])`;
    with a list of group keys (several groupings), the labels are a dict `{key: int [N]}`."""
    builder = _builder(name_or_builder, data_dir, download)
    _check_features(builder, group_key, image_key)
    return _read_arrays(builder, split, group_key, image_key)


def from_tfds(
    name_or_builder,
    group_key,
    split="train",
    image_key="image",
    groups_per_batch=32,
    max_group_size=None,
    shuffle=True,
    seed=None,
    drop_remainder=False,
    in_memory=None,
    shuffle_buffer=10_000,
    data_dir=None,
    download=True,
):
    """A TFDS split as batches of groups for `MLVAE.fit`, grouped by the feature `group_key`.

    Args:
        name_or_builder: a TFDS name (`"mnist"`, `"grouped_shapes/small"`) or a `DatasetBuilder`.
        group_key: the scalar integer feature that defines the groups (e.g. `"label"`).
        split: a TFDS split, slices included (`"train[:50000]"`).
        image_key: the image feature; uint8 images are scaled to [0, 1] float32.
        groups_per_batch, max_group_size, shuffle, seed, drop_remainder: as in `grouped_dataset`.
        in_memory: True reads the split into memory; False streams it (needs `max_group_size`);
            None decides by size (`MAX_IN_MEMORY_BYTES`).
        shuffle_buffer: streamed only: observations shuffled before grouping.
        data_dir, download: as in `tfds.load` (TFDS downloads only data sets that need it).

    Returns:
        `tf.data.Dataset` of `tf.RaggedTensor` `[groups, (observations), *image_shape]`.
    """
    import tensorflow_datasets as tfds

    groups_per_batch = validation.check_positive_int(groups_per_batch, "groups_per_batch")
    builder = _builder(name_or_builder, data_dir, download)
    _check_features(builder, group_key, image_key)
    if in_memory is None:
        size = _split_bytes(builder, split, image_key)
        in_memory = size is None or size <= MAX_IN_MEMORY_BYTES
    if in_memory:
        images, keys = _read_arrays(builder, split, group_key, image_key)
        return grouped_dataset(images, keys, groups_per_batch=groups_per_batch, max_group_size=max_group_size,
                               shuffle=shuffle, seed=seed, drop_remainder=drop_remainder)
    if max_group_size is None:
        raise ValueError("`max_group_size` is needed to stream a split: it is the size of the grouping window.")
    max_group_size = validation.check_positive_int(max_group_size, "max_group_size")
    read_config = tfds.ReadConfig(shuffle_seed=seed) if shuffle else None
    ds = _as_dataset(builder, split, shuffle_files=shuffle, read_config=read_config)
    if not any(True for _ in ds.take(1)):
        raise _empty(builder, split)
    ds = ds.map(lambda example: (_to_float(example[image_key]), tf.cast(example[group_key], tf.int64)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.group_by_window(
        key_func=lambda image, key: key,
        reduce_func=lambda key, window: window.map(lambda image, _: image).batch(max_group_size),
        window_size=max_group_size,
    )  # [(observations), *image_shape] per element: one window of one group
    return ds.ragged_batch(groups_per_batch, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def mnist_splits(group_key="label", seed=0, data_dir=None, download=True):
    """The paper's MNIST split (section 4): the 60,000 training images separated at random
    (`seed`) into 50,000 train and 10,000 validation images, and the standard test set.

    Returns:
        dict `{"train" | "val" | "test": (images float32 [N, 28, 28, 1], labels int [N])}`.
    """
    read = lambda split: load_tfds_arrays("mnist", group_key, split, data_dir=data_dir, download=download)  # noqa: E731
    return dict(split_validation(*read("train"), seed=seed), test=read("test"))


def mnist_datasets(groups_per_batch=64, max_group_size=10, seed=0, data_dir=None, download=True):
    """The paper's MNIST experiment (section 4): `mnist_splits`, every part grouped by digit label.

    Returns:
        dict `{"train" | "val" | "test": tf.data.Dataset}`.
    """
    return {
        part: grouped_dataset(x, labels, groups_per_batch=groups_per_batch, max_group_size=max_group_size,
                              shuffle=part == "train", seed=seed)
        for part, (x, labels) in mnist_splits("label", seed, data_dir, download).items()
    }
