"""Grouped pipelines: whole groups, chunk sizes, every observation once, reproducible, disjoint splits."""

import sys

import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import run

SIZES = (1, 3, 17, 4, 10, 2, 23)


def _indexed_data():
    """Images whose pixels hold their own index, so batches can be traced back to observations."""
    labels = np.repeat(np.arange(len(SIZES)) * 7 + 3, SIZES)  # arbitrary, non-contiguous labels
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    x = np.broadcast_to(np.arange(len(labels), dtype=np.float32)[:, None, None], (len(labels), 2, 3)).copy()
    return x, labels


def _epoch(ds):
    """One pass: a list of batches, each a list of groups, each an array of observation indices."""
    return [[row[:, 0, 0].astype(int) for row in batch] for batch in ds.as_numpy_iterator()]


@pytest.mark.parametrize("max_group_size, shuffle", [(None, True), (5, True), (5, False), (1, True)])
def test_batches_hold_whole_groups_and_every_observation_once(max_group_size, shuffle):
    x, labels = _indexed_data()
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=max_group_size,
                                       shuffle=shuffle, seed=1)
    expected_chunks = [-(-n // max_group_size) if max_group_size else 1 for n in SIZES]
    assert int(ds.cardinality()) == -(-sum(expected_chunks) // 3)
    for _ in range(2):  # two epochs
        batches = _epoch(ds)
        assert len(batches) == int(ds.cardinality())
        assert all(len(batch) == 3 for batch in batches[:-1])
        groups = [group for batch in batches for group in batch]
        for group in groups:
            assert len(set(labels[group])) == 1  # one group per row
            assert max_group_size is None or len(group) <= max_group_size
        seen = np.concatenate(groups)
        np.testing.assert_array_equal(np.sort(seen), np.arange(len(x)))  # each observation exactly once
        per_label = {label: sorted(len(g) for g in groups if labels[g[0]] == label) for label in set(labels)}
        for label, size in zip(np.arange(len(SIZES)) * 7 + 3, SIZES):
            chunks = -(-size // max_group_size) if max_group_size else 1
            assert len(per_label[label]) == chunks and max(per_label[label]) - min(per_label[label]) <= 1


def test_batches_are_ragged_float32_with_the_image_shape():
    x, labels = _indexed_data()
    batch = next(iter(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=4, seed=0)))
    assert batch.shape.as_list() == [4, None, 2, 3] and batch.ragged_rank == 1
    assert batch.dtype.name == "float32"


def test_same_seed_same_batches_new_epoch_new_batches_other_seed_other_batches():
    x, labels = _indexed_data()
    make = lambda seed: mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=5, seed=seed)  # noqa: E731
    ds = make(7)
    first, second = _epoch(ds), _epoch(ds)
    again = make(7)
    assert _same(first, _epoch(again)) and _same(second, _epoch(again))
    assert not _same(first, second)
    assert not _same(first, _epoch(make(8)))


def test_an_epoch_variable_resumes_the_sequence_of_batches():
    """A resumed run sets the epoch: its first iteration yields that epoch's batches, the ones an
    uninterrupted run would have had, not the first epoch's again."""
    x, labels = _indexed_data()
    kwargs = dict(groups_per_batch=3, max_group_size=5, seed=7)
    counting = mlvae_tf.data.grouped_dataset(x, labels, **kwargs)
    uninterrupted = [_epoch(counting) for _ in range(3)]
    epoch = tf.Variable(2, dtype=tf.int64)
    resumed = mlvae_tf.data.grouped_dataset(x, labels, epoch=epoch, **kwargs)
    assert _same(_epoch(resumed), uninterrupted[2])
    assert _same(_epoch(resumed), uninterrupted[2])  # the variable, not a count, decides
    epoch.assign(0)
    assert _same(_epoch(resumed), uninterrupted[0])


def test_shuffled_chunks_are_uniformly_random_partitions_of_a_group():
    """A group of 4 cut into chunks of 2: observation 0 shares its chunk with each of the other three
    in a third of the epochs (300 epochs: 100 each, standard deviation 8) and comes first in half
    of them (150, standard deviation 9)."""
    labels = np.array([0, 0, 0, 0, 1, 2])
    x = np.arange(len(labels), dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=4, max_group_size=2, seed=3)
    partners, first = [], 0
    assert ds.cardinality() == 1  # one batch an epoch: 300 epochs are 300 batches of one iterator
    for batch in _epoch(ds.repeat(300)):
        (chunk,) = [group for group in batch if 0 in group]
        assert len(chunk) == 2 and sorted(labels[chunk]) == [0, 0]
        partners.append(int(chunk[chunk != 0][0]))
        first += int(chunk[0] == 0)
    counts = np.bincount(partners, minlength=4)
    assert counts[0] == 0 and all(60 <= c <= 140 for c in counts[1:]), counts
    assert 100 <= first <= 200, first


def _same(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(np.array_equal(g, h) for g, h in zip(x, y)) for x, y in zip(a, b)
    )


@pytest.mark.slow
def test_same_seed_same_batches_in_another_process_whatever_the_global_seed():
    x, labels = _indexed_data()
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=5, seed=11)
    here = _epoch(ds)
    code = (
        "import numpy as np, tensorflow as tf, mlvae_tf; from tests.test_data import _indexed_data, _epoch; "
        "tf.random.set_seed(12345); x, labels = _indexed_data(); "
        "ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=5, seed=11); "
        "print(repr([[g.tolist() for g in b] for b in _epoch(ds)]))"
    )
    out = run([sys.executable, "-c", code]).stdout
    there = eval(out.strip().splitlines()[-1])
    assert [[g.tolist() for g in b] for b in here] == there


def test_unshuffled_dataset_keeps_index_order():
    x, labels = _indexed_data()
    batches = _epoch(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=100, shuffle=False))
    groups = batches[0]
    assert [labels[g[0]] for g in groups] == sorted(set(labels))
    assert all(np.all(np.diff(g) > 0) for g in groups)


def test_drop_remainder():
    x, labels = _indexed_data()
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, drop_remainder=True, seed=0)
    assert int(ds.cardinality()) == len(SIZES) // 3
    assert all(len(b) == 3 for b in _epoch(ds))


def test_split_groups_is_disjoint_covering_and_reproducible():
    labels = np.repeat(np.arange(40) * 3, np.arange(40) % 5 + 1)
    parts = mlvae_tf.data.split_groups(labels, (0.7, 0.2, 0.1), seed=3)
    assert [len(set(labels[p])) for p in parts] == [28, 8, 4]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not set(labels[parts[i]]) & set(labels[parts[j]])
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))
    again = mlvae_tf.data.split_groups(labels, (0.7, 0.2, 0.1), seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again))
    with pytest.raises(ValueError, match="`fractions` must be positive and sum to 1"):
        mlvae_tf.data.split_groups(labels, (0.7, 0.2))
    with pytest.raises(ValueError, match="Cannot split 2 groups into 3 parts"):
        mlvae_tf.data.split_groups([0, 0, 1], (0.5, 0.25, 0.25))


@pytest.mark.parametrize("fractions, sizes", [((0.5, 0.001, 0.499), [5, 1, 4]), ((0.001, 0.001, 0.998), [1, 1, 8]),
                                              ((0.998, 0.001, 0.001), [8, 1, 1]), ((0.34, 0.33, 0.33), [3, 4, 3])])
def test_split_groups_gives_every_part_a_group(fractions, sizes):
    labels = np.repeat(np.arange(10), 2)
    parts = mlvae_tf.data.split_groups(labels, fractions, seed=0)
    assert [len(set(labels[p])) for p in parts] == sizes
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))


def test_bundled_digits():
    x, labels = mlvae_tf.data.load_digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    assert labels.dtype == np.int32 and set(labels) == set(range(10))


def test_digits_splits_are_the_bundled_digits_in_proportion_with_every_group_in_every_part():
    x, _ = mlvae_tf.data.load_digits()
    splits = mlvae_tf.data.digits_splits(seed=0)
    sizes = [len(splits[part][1]) for part in ("train", "val", "test")]
    assert sum(sizes) == 1797 and all(abs(n - f * 1797) <= 1 for n, f in zip(sizes, mlvae_tf.data.DIGITS_SPLIT))
    for part, (_, y) in splits.items():
        assert set(y) == set(range(10)), part  # seen groups: the protocol classifies every class
    images = np.concatenate([splits[part][0] for part in ("train", "val", "test")]).reshape(1797, -1)
    assert sorted(map(bytes, images)) == sorted(map(bytes, x.reshape(1797, -1)))  # a partition of the digits
    loaded = mlvae_tf.data.load_splits("digits", seed=0)
    assert all(np.array_equal(loaded[p][0], splits[p][0]) and np.array_equal(loaded[p][1], splits[p][1]) for p in splits)
    other = mlvae_tf.data.digits_splits(seed=1)
    assert not np.array_equal(other["test"][1], splits["test"][1])


def test_split_observations_is_a_reproducible_partition():
    parts = mlvae_tf.data.split_observations(101, (0.7, 0.15, 0.15), seed=4)
    assert [len(p) for p in parts] == [70, 15, 16]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(101))
    again = mlvae_tf.data.split_observations(101, (0.7, 0.15, 0.15), seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(parts, again))


@pytest.mark.parametrize("max_group_size, largest", [(None, 23 + 17 + 10), (5, 5 + 5 + 5)])
def test_largest_batch_is_the_sum_of_the_largest_chunks_and_bounds_every_batch(max_group_size, largest):
    x, labels = _indexed_data()
    assert mlvae_tf.data.largest_batch(labels, 3, max_group_size) == largest
    for seed in range(5):
        ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=max_group_size, seed=seed)
        assert max(sum(len(g) for g in batch) for batch in _epoch(ds)) <= largest


def test_to_pairs_pads_every_batch_to_one_shape_and_keeps_the_groups():
    x, labels = _indexed_data()
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=5, shuffle=False)
    pad = mlvae_tf.data.largest_batch(labels, 3, 5)
    pairs = mlvae_tf.data.to_pairs(ds, pad_to=pad)
    assert [spec.shape.as_list() for spec in pairs.element_spec] == [[pad, 2, 3], [pad]]
    for groups, (images, group_ids) in zip(ds, pairs.as_numpy_iterator()):
        n = len(groups.flat_values)
        np.testing.assert_array_equal(images[:n], groups.flat_values)
        np.testing.assert_array_equal(group_ids[:n], groups.value_rowids())
        assert np.all(images[n:] == 0) and np.all(group_ids[n:] == -1)


def test_to_pairs_names_pad_to_when_it_is_bad_or_too_small():
    x, labels = _indexed_data()
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, shuffle=False)
    with pytest.raises(ValueError, match="`pad_to`"):
        mlvae_tf.data.to_pairs(ds, pad_to=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="more observations than `pad_to` \\(4\\)"):
        list(mlvae_tf.data.to_pairs(ds, pad_to=4))


def test_string_labels_are_renumbered_wherever_labels_are_taken():
    names = np.array(["bob", "ann", "bob", "cy", "ann", "bob"])
    group_ids, groups = mlvae_tf.data.group_index(names)
    np.testing.assert_array_equal(group_ids, [1, 0, 1, 2, 0, 1])
    np.testing.assert_array_equal(groups[group_ids], names)  # the mapping back
    x = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 2, 3), np.float32)
    batches = _epoch(mlvae_tf.data.grouped_dataset(x, names, groups_per_batch=2, shuffle=False))
    assert sorted(map(sorted, (list(g) for b in batches for g in b))) == [[0, 2, 5], [1, 4], [3]]
    parts = mlvae_tf.data.split_groups(names, (0.5, 0.5), seed=0)
    assert sorted(len(set(names[p])) for p in parts) == [1, 2]
    with pytest.raises(ValueError, match="`labels` must be a vector of integer or string labels, got dtype float"):
        mlvae_tf.data.group_index(np.zeros(3))
