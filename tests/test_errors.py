"""Bad input gets a clear ValueError naming the argument, up front."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM, make_tiny_model

X = np.random.default_rng(0).uniform(size=(6, *INPUT_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return make_tiny_model()


@pytest.mark.parametrize(
    "images, match",
    [
        (X[0], r"`images` must have shape \[batch, 8, 8, 1\] \(rank 4\)"),
        (X.reshape(6, 4, 16, 1), r"`images` must have shape \[batch, 8, 8, 1\], got shape \(6, 4, 16, 1\)"),
        ((X * 16).astype(np.int32), "`images` must be floating point.*int32"),
        (X[:0], "`images` is empty"),
        (np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X), "`images` contains 1 NaN or Inf"),
        (np.where(np.arange(X.size).reshape(X.shape) < 3, np.inf, X), "`images` contains 3 NaN or Inf"),
    ],
)
def test_bad_images(model, images, match):
    with pytest.raises(ValueError, match=match):
        model.encode(images)
    with pytest.raises(ValueError, match=match):
        model.encode_groups(images, np.zeros(len(images), np.int32))


@pytest.mark.parametrize(
    "group_ids, num_groups, match",
    [
        ([0, 1, 1, 3, 3, 0], None, "group 2 has no observations"),
        ([0, 1, 1, 2, 2], None, "`group_ids` has length 5 but there are 6 images"),
        ([0, 1, 1, 2, 2, -1], None, "`group_ids` must be >= 0"),
        ([0, 1, 1, 2, 2, 3], 3, "`group_ids` must be < num_groups=3"),
        ([0.0, 1, 1, 2, 2, 0], None, "`group_ids` must be integers"),
        ([[0, 1, 1, 2, 2, 0]], None, r"`group_ids` must be a vector"),
        ([0, 1, 1, 0, 1, 0], 3, "group 2 has no observations"),
    ],
)
def test_bad_group_ids(model, group_ids, num_groups, match):
    with pytest.raises(ValueError, match=match):
        model.encode_groups(X, np.array(group_ids), num_groups)


def test_bad_latents(model):
    with pytest.raises(ValueError, match=r"`content` must have shape \[batch, 5\]"):
        model.decode(np.zeros((2, CONTENT_DIM + 1), np.float32), np.zeros((2, STYLE_DIM), np.float32))
    with pytest.raises(ValueError, match=r"`style` must have shape \[batch, 3\]"):
        model.decode(np.zeros((2, CONTENT_DIM), np.float32), np.zeros((2,), np.float32))
    with pytest.raises(ValueError, match="`content` has 2 rows but `style` has 3"):
        model.decode(np.zeros((2, CONTENT_DIM), np.float32), np.zeros((3, STYLE_DIM), np.float32))
    with pytest.raises(ValueError, match="`style` contains 1 NaN"):
        model.decode(np.zeros((1, CONTENT_DIM), np.float32), np.array([[0, np.nan, 0]], np.float32))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(likelihood="poisson"), "`likelihood` must be one of"),
        (dict(aggregation="mean"), "`aggregation` must be one of"),
        (dict(architecture="resnet"), "`architecture` must be one of"),
        (dict(architecture="conv64", input_shape=(12, 12, 1)), "`architecture='conv64'` needs `input_shape`"),
        (dict(content_dim=0), "`content_dim` must be an integer >= 1"),
        (dict(style_dim=2.5), "`style_dim` must be an integer >= 1"),
        (dict(input_shape=(8, -1)), "`input_shape` must be an integer >= 1"),
        (dict(input_shape=8), "`input_shape` must be a tuple of positive integers"),
        (dict(observation_scale=0.0), "`observation_scale` must be > 0"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_tiny_model(**kwargs)


BASELINES = {
    "VAE": lambda **kw: mlvae_tf.VAE(**kw),
    "RegularisedVAE": lambda **kw: mlvae_tf.RegularisedVAE(**kw),
    "SVI": lambda **kw: mlvae_tf.SVI(num_observations=6, num_groups=2, **kw),
}


@pytest.mark.parametrize("kind", sorted(BASELINES))
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(likelihood="poisson"), "`likelihood` must be one of"),
        (dict(architecture="conv64", input_shape=(12, 12, 1)), "`architecture='conv64'` needs `input_shape`"),
        (dict(content_dim=0), "`content_dim` must be an integer >= 1"),
        (dict(style_dim=0), "`style_dim` must be an integer >= 1"),
        (dict(input_shape=8), "`input_shape` must be a tuple of positive integers"),
        (dict(observation_scale=-1.0), "`observation_scale` must be > 0"),
    ],
)
def test_every_model_checks_the_shared_arguments_alike(kind, kwargs, match):
    arguments = dict(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=5)
    with pytest.raises(ValueError, match=match):
        BASELINES[kind](**{**arguments, **kwargs})


def test_baselines_check_their_own_arguments_and_inputs():
    shared = dict(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=5)
    with pytest.raises(ValueError, match="`penalty_weight` must be >= 0"):
        mlvae_tf.RegularisedVAE(penalty_weight=-0.1, **shared)
    for kwargs, match in ((dict(num_observations=0, num_groups=2), "`num_observations` must be an integer >= 1"),
                          (dict(num_observations=6, num_groups=2, inference_steps=0), "`inference_steps` must be"),
                          (dict(num_observations=6, num_groups=2, inference_learning_rate=0), "must be > 0")):
        with pytest.raises(ValueError, match=match):
            mlvae_tf.SVI(**kwargs, **shared)
    svi = mlvae_tf.SVI(num_observations=6, num_groups=2, **shared)
    with pytest.raises(ValueError, match="must hold num_observations=6 rows"):
        svi.index(X[:5], [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match=r"`group_ids` must lie in \[0, num_groups=2\)"):
        svi.index(X, [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="`x` must have shape"):
        svi.index(X.reshape(6, 4, 16, 1), [0, 0, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1"):
        svi.infer(X, np.zeros(6, np.int32), 1, steps=0)
    vae = mlvae_tf.VAE(**shared)
    with pytest.raises(ValueError, match="group 1 has no observations"):
        vae.encode_groups(X, [0, 0, 2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"`images` contains 1 NaN or Inf"):
        vae.encode(np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X))


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--data", "cifar"], "argument --data: invalid choice: 'cifar'"),
        (["compare", "--models", "missing.keras"], "--models: no such file 'missing.keras'"),
        (["compare", "--set", "model.kind=gan"], "config key `model.kind` must be one of"),
        (["train", "--set", "model.penalty_weight=-1"], "config key `model.penalty_weight` must be a number >= 0"),
        (["train", "--set", "model.inference_steps=0"], "config key `model.inference_steps` must be an integer >= 1"),
    ],
)
def test_the_new_commands_and_keys_fail_in_one_line(args, message, capsys):
    from tests.conftest import assert_one_line_error, run_cli

    status, _, err = run_cli(capsys, *args)
    assert_one_line_error(status, err, message)


def test_fit_refuses_arrays_that_keras_would_split_into_partial_groups(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="`x` must be a tf.data.Dataset of batches of whole groups"):
        model.fit((X, np.zeros(6, np.int32)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="`validation_data` must be a tf.data.Dataset"):
        model.fit(tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(X, [6])), validation_data=X, verbose=0)


def test_fit_refuses_a_batch_that_is_not_groups(model):
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="A batch of groups must be a tf.RaggedTensor"):
        model.fit(tf.data.Dataset.from_tensors(X), epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(groups_per_batch=0), "`groups_per_batch` must be an integer >= 1, got 0"),
        (dict(max_group_size=0), "`max_group_size` must be an integer >= 1"),
        (dict(x=np.full((6, 8, 8, 1), np.nan, np.float32)), "`x` contains 384 NaN or Inf"),
        (dict(x=np.zeros((6, 8, 8, 1), np.uint8)), "`x` must be floating point"),
        (dict(group_ids=np.zeros(5, np.int32)), "`group_ids` has length 5 but `x` has 6"),
        (dict(group_ids=np.zeros(6, np.float32)), "`group_ids` must be a vector of integer or string labels"),
    ],
)
def test_bad_grouped_dataset_arguments(kwargs, match):
    arguments = dict(x=X, group_ids=np.zeros(6, np.int32), groups_per_batch=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mlvae_tf.data.grouped_dataset(**arguments)


def test_fit_on_labels_as_pair_ids_names_the_pipeline():
    """A user's `Dataset.from_tensor_slices((x, labels)).batch(4)`: labels are not batch group ids."""
    import keras
    import tensorflow as tf

    from tests.conftest import make_tiny_model

    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = np.random.default_rng(0).uniform(size=(8, 8, 8, 1)).astype(np.float32)
    labels = np.array([9, 9, 3, 3, 7, 7, 1, 1], np.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs group ids in .0, batch size.*grouped_dataset"):
        model.fit(tf.data.Dataset.from_tensor_slices((x, labels)).batch(4), epochs=1, verbose=0)


def test_the_suite_runs_offline():
    import socket

    from tests.conftest import NetworkDisabledError

    with pytest.raises(NetworkDisabledError, match="tests run offline"):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(NetworkDisabledError, match="'93.184.215.14', 80"):
        socket.socket().connect(("93.184.215.14", 80))


def test_commands_load_models_in_safe_mode_and_refuse_bad_files_in_one_line(tmp_path, capsys):
    """A `.keras` file holding a Python lambda (arbitrary code), a truncated one and one that is not
    an archive at all: every command that loads a model answers with one line, exit 1."""
    import keras

    from tests.conftest import assert_one_line_error, make_tiny_model, run_cli

    crafted = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2)])
    crafted.save(tmp_path / "lambda.keras")
    make_tiny_model().save(tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "truncated.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.keras").write_text("not a model")
    for name, message in (("lambda", "safe_mode"), ("truncated", "cannot load"), ("text", "cannot load")):
        path = tmp_path / f"{name}.keras"
        for command in (["info", "--model", path], ["export", "--model", path, "--name", "x", "--out", tmp_path],
                        ["evaluate", "--model", path, "--data", "digits", "--out", tmp_path / "r"]):
            status, _, err = run_cli(capsys, *command)
            assert_one_line_error(status, err, message)
            assert status == 1 and "--model: cannot load" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "r").exists()


def test_run_names_cannot_leave_the_runs_folder(tmp_path, capsys):
    from tests.conftest import assert_one_line_error, run_cli

    for name in ("../../x", "a/b", ".hidden"):
        status, _, err = run_cli(capsys, "train", "--set", f"name={name}", "--runs-dir", tmp_path / "runs")
        assert_one_line_error(status, err, "config key `name` must be a plain folder name")
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


def test_info_on_an_export_folder_checks_every_file_against_the_manifest(exported, tmp_path, capsys):
    import json
    import shutil

    from tests.conftest import run_cli

    root = tmp_path / "digits"
    shutil.copytree(exported[1], root)
    status, out, _ = run_cli(capsys, "info", "--model", root)
    report = json.loads(out)
    assert status == 0 and report["intact"] and report["missing"] == report["altered"] == report["unlisted"] == []
    with open(root / "onnx" / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    (root / "encoder" / "1" / "fingerprint.pb").unlink()
    (root / "extra.txt").write_text("?")
    status, out, _ = run_cli(capsys, "info", "--model", root)
    report = json.loads(out)
    assert status == 1 and not report["intact"]
    assert (report["altered"], report["missing"], report["unlisted"]) == (
        ["onnx/decoder.onnx"], ["encoder/1/fingerprint.pb"], ["extra.txt"])
