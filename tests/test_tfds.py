"""TFDS adapters: the grouped-shapes builder, from_tfds in memory and streamed, MNIST under mock data,
Fashion-MNIST's IDX files."""

import gzip
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

import mlvae_tf
from mlvae_tf.data import grouped_shapes
from mlvae_tf.data.grouped_shapes import COLORS, GroupedShapes


class GroupedShapesTest(tfds.testing.DatasetBuilderTestCase):
    """TFDS's own builder test: registration, info, generation and reading of the `small` config."""

    DATASET_CLASS = GroupedShapes
    BUILDER_CONFIG_NAMES_TO_TEST = ["small"]
    SPLITS = {"train": 3000}
    SKIP_CHECKSUMS = True
    EXAMPLE_DIR = str(pathlib.Path(__file__).parent)  # generated data: no dummy downloads to serve


def test_two_builds_with_the_same_seed_are_byte_identical(shapes_dir, tmp_path):
    tfds.builder("grouped_shapes/small", data_dir=str(tmp_path)).download_and_prepare()
    first = sorted((shapes_dir / "grouped_shapes" / "small" / "1.0.0").glob("*.tfrecord*"))
    second = sorted((tmp_path / "grouped_shapes" / "small" / "1.0.0").glob("*.tfrecord*"))
    assert first and [p.name for p in first] == [p.name for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))


def test_rendered_factors_are_what_the_labels_say():
    image = grouped_shapes.render(32, shape=1, color=2, scale=3, rotation=0, position_x=0, position_y=7)
    lit = np.argwhere(image.max(-1) > 0)
    np.testing.assert_allclose(image[lit[0][0], lit[0][1]], np.round(np.array(COLORS[2]) * 255))
    center = lit.mean(0) / 32  # (row = y, column = x), as fractions of the side
    np.testing.assert_allclose(center, [grouped_shapes.POSITIONS[7], grouped_shapes.POSITIONS[0]], atol=0.05)
    small = grouped_shapes.render(32, shape=1, color=2, scale=0, rotation=0, position_x=4, position_y=4)
    assert (small.max(-1) > 0).sum() < (image.max(-1) > 0).sum()  # scale grows the shape


def _colour_of(image):
    lit = image.reshape(-1, 3)[image.reshape(-1, 3).max(-1) > 0.05]
    return int(np.argmin([np.abs(lit.mean(0) - np.array(c)).sum() for c in COLORS]))


@pytest.mark.parametrize("in_memory", [True, False])
def test_from_tfds_batches_hold_whole_groups_of_one_factor(shapes_dir, in_memory):
    ds = mlvae_tf.data.from_tfds("grouped_shapes/small", "color", groups_per_batch=4, max_group_size=7,
                                 seed=0, in_memory=in_memory, data_dir=str(shapes_dir), download=False)
    total = 0
    for batch in ds:
        assert batch.flat_values.shape[1:] == (32, 32, 3)
        for group in batch:
            group = group.numpy()
            assert 1 <= len(group) <= 7
            assert len({_colour_of(image) for image in group}) == 1
            total += len(group)
    assert total == 3000  # every observation once per epoch


def test_from_tfds_names_an_empty_split(shapes_dir):
    """The other bad inputs of `from_tfds` are in tests/test_bad_inputs.py."""
    with pytest.raises(ValueError, match="`split`: grouped_shapes split 'train\\[3000:\\]' is empty"):
        mlvae_tf.data.from_tfds("grouped_shapes/small", "shape", split="train[3000:]", data_dir=str(shapes_dir),
                                download=False)


def test_mnist_experiment_end_to_end_under_mock_data():
    import keras

    with tfds.testing.mock_data(num_examples=60):
        parts = mlvae_tf.data.mnist_datasets(groups_per_batch=4, max_group_size=5, seed=0)
        counts = {part: sum(int(b.row_lengths().numpy().sum()) for b in ds) for part, ds in parts.items()}
        model = mlvae_tf.MLVAE(input_shape=(28, 28, 1), content_dim=3, style_dim=2, hidden_units=11)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(parts["train"], validation_data=parts["val"], epochs=1, verbose=0)
    assert counts["train"] > 0 and counts["val"] > 0 and counts["test"] > 0
    assert counts["train"] == 5 * counts["val"]  # 50,000 / 10,000 of MNIST's training images
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["val_loss"][0])


def test_mnist_train_and_validation_are_separated_at_random():
    """The paper separates them at random (section 4), not as fixed slices: the validation part
    is a seeded random sixth of the training images, disjoint from the train part."""
    with tfds.testing.mock_data(num_examples=60):
        splits = [mlvae_tf.data.mnist_splits(seed=seed) for seed in (0, 0, 1)]
        ordered = mlvae_tf.data.load_tfds_arrays("mnist", "label", "train")[0]
    first, again, other = ([bytes(image) for image in s["val"][0]] for s in splits)
    assert len(first) == 10 and first == again and first != other
    train = {bytes(image) for image in splits[0]["train"][0]}
    assert not train & set(first) and len(train) + len(first) == 60
    assert first != [bytes(image) for image in ordered[50:]]  # not the last slice


def test_read_idx_on_a_hand_written_file(tmp_path):
    values = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + b"".join(int(d).to_bytes(4, "big") for d in values.shape)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header + values.tobytes())
    np.testing.assert_array_equal(mlvae_tf.data.read_idx(str(path)), values)
    for code, dtype in ((0x09, np.int8), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")):
        values = (np.arange(6).reshape(3, 2) * -1.5).astype(dtype)  # big-endian as the format stores them
        path = tmp_path / f"x-{code}"
        path.write_bytes(bytes([0, 0, code, 2]) + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") + values.tobytes())
        read = mlvae_tf.data.read_idx(str(path))
        assert read.dtype == np.dtype(dtype) and read.shape == (3, 2)
        np.testing.assert_array_equal(read, values)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="header says shape"):
        mlvae_tf.data.read_idx(str(truncated))
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="is not an IDX file"):
        mlvae_tf.data.read_idx(str(bad))


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        mlvae_tf.data.load_fashion_mnist(root=str(tmp_path))


@pytest.mark.skipif(not (mlvae_tf.data.idx.os.path.isdir(mlvae_tf.data.idx.FASHION_MNIST_DIR)),
                    reason="Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
def test_fashion_mnist_splits_follow_the_paper():
    splits = mlvae_tf.data.fashion_mnist_splits(seed=0)
    assert {k: len(v[1]) for k, v in splits.items()} == {"train": 50_000, "val": 10_000, "test": 10_000}
    assert splits["train"][0].shape[1:] == (28, 28, 1) and splits["train"][0].dtype == np.float32
    assert set(np.unique(splits["test"][1])) == set(range(10)) and np.all(np.bincount(splits["test"][1]) == 1000)


def test_streamed_grouping_is_reproducible_for_a_seed(shapes_dir):
    def first_batches(seed):
        ds = mlvae_tf.data.from_tfds("grouped_shapes/small", "shape", groups_per_batch=4, max_group_size=5,
                                     seed=seed, in_memory=False, data_dir=str(shapes_dir), download=False)
        return [b.flat_values.numpy() for b in ds.take(3)]

    first, again, other = first_batches(3), first_batches(3), first_batches(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))


def test_preparing_off_a_terminal_draws_no_progress_bars(tmp_path, capfd):
    import tensorflow_datasets as tfds

    try:
        mlvae_tf.data.load_tfds_arrays("grouped_shapes/small", "shape", data_dir=str(tmp_path))
        out, err = capfd.readouterr()
        assert "grouped_shapes" in out + err and "\r" not in out + err  # TFDS's own lines, no bar redrawn
    finally:
        tfds.display_progress_bar(True)
