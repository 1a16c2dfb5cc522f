"""The bad-input matrix: every public entry point against the bad inputs it can get.

Each row names the entry point and the case, makes the call, and expects the exception type that
the README's reliability section documents for that entry point, with a message that names the
argument and what was expected. The Python API raises `ValueError` (its subclasses `ExportError`
and `ModelFileError` included) in one line, before any graph runs; the exported SavedModels raise
TensorFlow's `InvalidArgumentError` with the rule, ONNX Runtime its own errors naming the input or
the check's node; the commands print one line and exit non-zero.
"""

import re
import types

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import mlvae_tf
from export import ExportError, export_model
from mlvae_tf.data import from_tfds, grouped_dataset, split_groups, to_pairs
from mlvae_tf.evaluation import compute_protocol
from mlvae_tf.files import ModelFileError
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM, assert_one_line_error, make_tiny_model, run_cli

X = np.random.default_rng(0).uniform(size=(6, *INPUT_SHAPE)).astype(np.float32)
IDS = np.array([0, 0, 1, 1, 2, 2], np.int32)


def _with(x, index, value):
    x = x.copy()
    x.flat[index] = value
    return x


NAN, INF = _with(X, 5, np.nan), _with(X, 7, -np.inf)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model, its `.keras` file (and a corrupt one) and its export, once per module."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    model = make_tiny_model()
    model.encode(X[:1])
    model.save(folder / "model.keras")
    data = (folder / "model.keras").read_bytes()
    (folder / "truncated.keras").write_bytes(data[: len(data) // 2])
    (folder / "file.txt").write_text("a file, not a folder")
    export_model(model, folder / "exports", "tiny")
    root = folder / "exports" / "tiny"
    encoder = tf.saved_model.load(str(root / "encoder" / "1"))
    decoder = tf.saved_model.load(str(root / "decoder" / "1"))
    onnx = {part: ort.InferenceSession(str(root / "onnx" / f"{part}.onnx"))
            for part in ("encoder", "group_encoder", "decoder")}
    return types.SimpleNamespace(model=model, folder=folder, encoder=encoder.signatures["serving_default"],
                                 group_encoder=encoder.signatures["encode_groups"],
                                 decoder=decoder.signatures["serving_default"], onnx=onnx)


def _ragged(x=X, lengths=(2, 2, 2)):
    return tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, list(lengths)))


def _pairs(x, ids):
    return tf.data.Dataset.from_tensors((x, np.asarray(ids)))


def _fit(data, jit_compile=False, **kwargs):
    """`fit` on a new model (a failed fit may leave Keras's compiled functions half built)."""
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit_compile)
    return lambda env: model.fit(data, epochs=1, verbose=0, **kwargs)


def _evaluate(data):
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return lambda env: model.evaluate(data, verbose=0)


def _represent(env):
    return lambda images, ids: {k: np.asarray(v) for k, v in env.model.encode_groups(images, ids).items()}


GROUP_RULE = "holds a pair batch whose group ids are not the ids of its groups"
LABELS = np.repeat(np.arange(3), 20)
IMAGES = np.random.default_rng(1).uniform(size=(60, *INPUT_SHAPE)).astype(np.float32)

# (entry point, case, call(env), exception type, message)
PYTHON_API = [
    # grouped_dataset
    ("grouped_dataset", "wrong rank", lambda env: grouped_dataset(X.reshape(-1), np.zeros(384)), ValueError,
     r"`x` must have shape \[N, \*input_shape\], got shape \(384,\)"),
    ("grouped_dataset", "ragged nested lists", lambda env: grouped_dataset([[1.0, 2.0], [3.0]], [0, 1]), ValueError,
     "`x` must be an array"),
    ("grouped_dataset", "wrong dtype", lambda env: grouped_dataset((X * 255).astype(np.uint8), IDS), ValueError,
     "`x` must be floating point"),
    ("grouped_dataset", "empty data", lambda env: grouped_dataset(X[:0], IDS[:0]), ValueError, "`x` is empty"),
    ("grouped_dataset", "NaN", lambda env: grouped_dataset(NAN, IDS), ValueError, "`x` contains 1 NaN or Inf"),
    ("grouped_dataset", "Inf", lambda env: grouped_dataset(INF, IDS), ValueError, "`x` contains 1 NaN or Inf"),
    ("grouped_dataset", "ids of the wrong length", lambda env: grouped_dataset(X, IDS[:5]), ValueError,
     "`group_ids` has length 5 but `x` has 6"),
    ("grouped_dataset", "non-integer ids", lambda env: grouped_dataset(X, IDS + 0.5), ValueError,
     "`group_ids` must be a vector of integer or string labels"),
    ("grouped_dataset", "ids of rank 2", lambda env: grouped_dataset(X, IDS[None]), ValueError,
     "`group_ids` must be a vector"),
    ("grouped_dataset", "groups_per_batch 0", lambda env: grouped_dataset(X, IDS, groups_per_batch=0), ValueError,
     "`groups_per_batch` must be an integer >= 1, got 0"),
    ("grouped_dataset", "max_group_size of the wrong type", lambda env: grouped_dataset(X, IDS, max_group_size="4"),
     ValueError, "`max_group_size` must be an integer >= 1"),
    # to_pairs
    ("to_pairs", "arrays, not a dataset", lambda env: to_pairs(X), ValueError,
     "`dataset` must be a tf.data.Dataset of ragged batches"),
    ("to_pairs", "dense batches", lambda env: to_pairs(tf.data.Dataset.from_tensors(X)), ValueError,
     "`dataset` must be a tf.data.Dataset of ragged batches"),
    ("to_pairs", "pad_to 0", lambda env: to_pairs(_ragged(), pad_to=0), ValueError, "`pad_to` must be an integer >= 1"),
    ("to_pairs", "pad_to not an integer", lambda env: to_pairs(_ragged(), pad_to=5.5), ValueError,
     "`pad_to` must be an integer >= 1"),
    ("to_pairs", "pad_to below a batch, when it is read", lambda env: list(to_pairs(_ragged(), pad_to=4)),
     tf.errors.InvalidArgumentError, r"`dataset` holds a batch with more observations than `pad_to` \(4\)"),
    # split_groups
    ("split_groups", "fractions not summing to 1", lambda env: split_groups(IDS, (0.5, 0.6)), ValueError,
     "`fractions` must be positive and sum to 1"),
    ("split_groups", "negative fraction", lambda env: split_groups(IDS, (1.5, -0.5)), ValueError,
     "`fractions` must be positive"),
    ("split_groups", "fewer groups than parts", lambda env: split_groups([0, 0, 1], (0.4, 0.3, 0.3)), ValueError,
     "Cannot split 2 groups into 3 parts"),
    ("split_groups", "empty data", lambda env: split_groups([], (0.5, 0.5)), ValueError,
     "`group_ids` must be a vector of integer or string labels"),
    ("split_groups", "non-integer ids", lambda env: split_groups(IDS + 0.5), ValueError,
     "`group_ids` must be a vector of integer or string labels"),
    ("split_groups", "ids of rank 2", lambda env: split_groups(IDS[None]), ValueError,
     "`group_ids` must be a vector"),
    # MLVAE(...)
    ("MLVAE", "content latent of size 0", lambda env: make_tiny_model(content_dim=0), ValueError,
     "`content_dim` must be an integer >= 1, got 0"),
    ("MLVAE", "style latent of size 0", lambda env: make_tiny_model(style_dim=0), ValueError,
     "`style_dim` must be an integer >= 1, got 0"),
    ("MLVAE", "latent size of the wrong type", lambda env: make_tiny_model(content_dim="5"), ValueError,
     "`content_dim` must be an integer >= 1, got '5'"),
    ("MLVAE", "input_shape not a tuple", lambda env: make_tiny_model(input_shape=8), ValueError,
     "`input_shape` must be a tuple of positive integers"),
    ("MLVAE", "input_shape with a negative size", lambda env: make_tiny_model(input_shape=(8, -1)), ValueError,
     "`input_shape` must be an integer >= 1"),
    ("MLVAE", "an image shape conv64 cannot take", lambda env: make_tiny_model(architecture="conv64",
                                                                               input_shape=(12, 12, 1)),
     ValueError, "`architecture='conv64'` needs `input_shape`.*multiples of 8"),
    ("MLVAE", "unknown likelihood", lambda env: make_tiny_model(likelihood="poisson"), ValueError,
     "`likelihood` must be one of"),
    ("MLVAE", "unknown aggregation", lambda env: make_tiny_model(aggregation="mean"), ValueError,
     "`aggregation` must be one of"),
    ("MLVAE", "unknown architecture", lambda env: make_tiny_model(architecture="resnet"), ValueError,
     "`architecture` must be one of"),
    ("MLVAE", "hidden_units 0", lambda env: make_tiny_model(hidden_units=0), ValueError,
     "`hidden_units` must be an integer >= 1"),
    ("MLVAE", "observation_scale 0", lambda env: make_tiny_model(observation_scale=0.0), ValueError,
     "`observation_scale` must be > 0"),
    # fit: what the dataset's spec shows is refused up front, the values as each batch is read
    ("fit", "arrays, not a dataset", lambda env: _fit((X, IDS))(env), ValueError,
     "`x` must be a tf.data.Dataset of batches of whole groups"),
    ("fit", "validation_data arrays", lambda env: _fit(_ragged(), validation_data=X)(env), ValueError,
     "`validation_data` must be a tf.data.Dataset"),
    ("fit", "dense batches", lambda env: _fit(tf.data.Dataset.from_tensors(X))(env), ValueError,
     r"`x` must yield a tf.RaggedTensor \[groups, \(observations\), \*input_shape\] of floats, or a pair"),
    ("fit", "three-part batches", lambda env: _fit(tf.data.Dataset.from_tensors((X, IDS, IDS)))(env), ValueError,
     "`x` must yield a tf.RaggedTensor"),
    ("fit", "wrong dtype", lambda env: _fit(_ragged((X * 255).astype(np.int32)))(env), ValueError,
     "`x` must yield floating-point images.*int32"),
    ("fit", "wrong image shape", lambda env: _fit(_ragged(X.reshape(6, 4, 16, 1)))(env), ValueError,
     r"`x` must yield images of shape \[\.\.\., 8, 8, 1\] \(the model's input_shape\), got \(4, 16, 1\)"),
    ("fit", "wrong rank", lambda env: _fit(_ragged(X.reshape(6, 64)))(env), ValueError,
     "`x` must yield images of shape"),
    ("fit", "empty data", lambda env: _fit(_ragged().take(0))(env), ValueError, "`x` is empty: it yields no batches"),
    ("fit", "empty group", lambda env: _fit(_ragged(X, (3, 0, 3)))(env), ValueError,
     "`x` holds a batch with an empty group"),
    ("fit", "NaN", lambda env: _fit(_ragged(NAN))(env), ValueError, "`x` holds a batch with NaN or Inf images"),
    ("fit", "Inf in pairs", lambda env: _fit(_pairs(INF, IDS))(env), ValueError,
     "`x` holds a batch with NaN or Inf images"),
    ("fit", "non-integer ids", lambda env: _fit(_pairs(X, IDS.astype(np.float32)))(env), ValueError,
     "`x`: the group ids of its pair batches must be integers, got float32"),
    ("fit", "ids of rank 2", lambda env: _fit(_pairs(X, IDS[None]))(env), ValueError,
     r"`x`: the group ids of its pair batches must be a vector \[N\]"),
    ("fit", "ids of the wrong length", lambda env: _fit(_pairs(X, IDS[:5]))(env), ValueError,
     "`x` holds a pair batch whose images and group_ids differ in length"),
    ("fit", "negative ids", lambda env: _fit(_pairs(X, [0, 0, 1, 1, -2, 2]))(env), ValueError, GROUP_RULE),
    ("fit", "ids out of range (labels)", lambda env: _fit(_pairs(X, [9, 9, 3, 3, 7, 7]))(env), ValueError, GROUP_RULE),
    ("fit", "a gap in the ids (an empty group)", lambda env: _fit(_pairs(X, [0, 0, 1, 1, 3, 3]))(env), ValueError,
     GROUP_RULE),
    ("fit under XLA", "a gap in the ids", lambda env: _fit(_pairs(X, [0, 0, 2, 2, 2, 2]), jit_compile=True)(env),
     ValueError, GROUP_RULE),
    ("fit under XLA", "NaN", lambda env: _fit(_pairs(NAN, IDS), jit_compile=True)(env), ValueError,
     "`x` holds a batch with NaN or Inf images"),
    ("fit under XLA", "ragged batches", lambda env: _fit(_ragged(), jit_compile=True)(env), ValueError,
     "`x` holds ragged batches, but the model was compiled with `jit_compile=True`"),
    ("fit", "pad_to below a batch", lambda env: _fit(to_pairs(_ragged(), pad_to=4))(env), ValueError,
     r"`dataset` holds a batch with more observations than `pad_to` \(4\)"),
    # evaluate: Keras's, and the paper's protocol
    ("evaluate", "arrays, not a dataset", lambda env: _evaluate(X)(env), ValueError,
     "`x` must be a tf.data.Dataset of batches of whole groups"),
    ("evaluate", "NaN", lambda env: _evaluate(_ragged(NAN))(env), ValueError, "`x` holds a batch with NaN or Inf"),
    ("evaluate", "a gap in the ids", lambda env: _evaluate(_pairs(X, [0, 0, 1, 1, 3, 3]))(env), ValueError,
     GROUP_RULE),
    ("compute_protocol", "not a pair", lambda env: compute_protocol(_represent(env), IMAGES, K=2, progress=False),
     ValueError, r"`test` must be a pair \(images, labels\)"),
    ("compute_protocol", "labels of the wrong length",
     lambda env: compute_protocol(_represent(env), (IMAGES, LABELS[:50]), K=2, progress=False), ValueError,
     "`test`: images must be an array .* with one label each"),
    ("compute_protocol", "non-integer labels",
     lambda env: compute_protocol(_represent(env), (IMAGES, LABELS + 0.5), K=2, progress=False), ValueError,
     "`test`: labels must be a non-empty vector of integers"),
    ("compute_protocol", "empty data",
     lambda env: compute_protocol(_represent(env), (IMAGES[:0], LABELS[:0]), K=2, progress=False), ValueError,
     "`test`: labels must be a non-empty vector"),
    ("compute_protocol", "trials 0",
     lambda env: compute_protocol(_represent(env), (IMAGES, LABELS), K=2, trials=0, progress=False), ValueError,
     "`trials` must be an integer >= 1, got 0"),
    ("compute_protocol", "ks beyond K",
     lambda env: compute_protocol(_represent(env), (IMAGES, LABELS), K=2, ks=(1, 5), progress=False), ValueError,
     r"`ks` must lie in \[1, K\]"),
    ("compute_protocol", "NaN", lambda env: compute_protocol(_represent(env), (_with(IMAGES, 3, np.nan), LABELS), K=2, ks=(1,),
                                                             progress=False), ValueError, "`images` contains 1 NaN"),
    # encode
    ("encode", "wrong rank", lambda env: env.model.encode(X[0]), ValueError,
     r"`images` must have shape \[batch, 8, 8, 1\] \(rank 4\)"),
    ("encode", "wrong shape", lambda env: env.model.encode(X.reshape(6, 4, 16, 1)), ValueError,
     r"`images` must have shape \[batch, 8, 8, 1\], got shape \(6, 4, 16, 1\)"),
    ("encode", "wrong dtype", lambda env: env.model.encode((X * 16).astype(np.int32)), ValueError,
     "`images` must be floating point.*int32"),
    ("encode", "empty data", lambda env: env.model.encode(X[:0]), ValueError, "`images` is empty"),
    ("encode", "NaN", lambda env: env.model.encode(NAN), ValueError, "`images` contains 1 NaN or Inf"),
    ("encode", "Inf", lambda env: env.model.encode(INF), ValueError, "`images` contains 1 NaN or Inf"),
    ("encode", "a ragged batch", lambda env: env.model.encode(tf.RaggedTensor.from_row_lengths(X, [3, 3])),
     ValueError, "`images` must be a dense array"),
    # encode_groups
    ("encode_groups", "NaN", lambda env: env.model.encode_groups(NAN, IDS), ValueError, "`images` contains 1 NaN"),
    ("encode_groups", "empty data", lambda env: env.model.encode_groups(X[:0], IDS[:0]), ValueError,
     "`images` is empty"),
    ("encode_groups", "empty group", lambda env: env.model.encode_groups(X, [0, 1, 1, 3, 3, 0]), ValueError,
     "group 2 has no observations"),
    ("encode_groups", "ids of the wrong length", lambda env: env.model.encode_groups(X, IDS[:5]), ValueError,
     "`group_ids` has length 5 but there are 6 images"),
    ("encode_groups", "negative ids", lambda env: env.model.encode_groups(X, [0, 1, 1, 2, 2, -1]), ValueError,
     "`group_ids` must be >= 0"),
    ("encode_groups", "ids out of range", lambda env: env.model.encode_groups(X, [0, 1, 1, 2, 2, 3], 3), ValueError,
     "`group_ids` must be < num_groups=3"),
    ("encode_groups", "non-integer ids", lambda env: env.model.encode_groups(X, IDS + 0.0), ValueError,
     "`group_ids` must be integers"),
    ("encode_groups", "ids of rank 2", lambda env: env.model.encode_groups(X, IDS[None]), ValueError,
     r"`group_ids` must be a vector \[batch\]"),
    ("encode_groups", "num_groups too small", lambda env: env.model.encode_groups(X, IDS, 0), ValueError,
     "`group_ids` must be < num_groups=0"),
    # decode
    ("decode", "wrong latent size", lambda env: env.model.decode(np.zeros((2, CONTENT_DIM + 1), np.float32),
                                                                 np.zeros((2, STYLE_DIM), np.float32)),
     ValueError, r"`content` must have shape \[batch, 5\]"),
    ("decode", "wrong rank", lambda env: env.model.decode(np.zeros((2, CONTENT_DIM), np.float32),
                                                          np.zeros((2,), np.float32)),
     ValueError, r"`style` must have shape \[batch, 3\]"),
    ("decode", "rows that differ", lambda env: env.model.decode(np.zeros((2, CONTENT_DIM), np.float32),
                                                                np.zeros((3, STYLE_DIM), np.float32)),
     ValueError, "`content` has 2 rows but `style` has 3"),
    ("decode", "wrong dtype", lambda env: env.model.decode(np.zeros((2, CONTENT_DIM), np.int32),
                                                           np.zeros((2, STYLE_DIM), np.int32)),
     ValueError, "`content` must be floating point"),
    ("decode", "NaN", lambda env: env.model.decode(np.zeros((1, CONTENT_DIM), np.float32),
                                                   np.array([[0, np.nan, 0]], np.float32)),
     ValueError, "`style` contains 1 NaN"),
    # the exporter
    ("export_model", "name that leaves the folder", lambda env: export_model(env.model, env.folder, "../x"),
     ExportError, "`name` must be a plain folder name, got '../x'"),
    ("export_model", "version 0", lambda env: export_model(env.model, env.folder, "x", version=0), ExportError,
     "`version` must be an integer >= 1"),
    ("export_model", "unknown format", lambda env: export_model(env.model, env.folder, "x", formats=("tflite",)),
     ExportError, "`formats` must be a non-empty subset"),
    ("export_model", "out is a file", lambda env: export_model(env.model, env.folder / "file.txt", "x"), ExportError,
     "`out` must be a folder"),
    ("export_model", "model of the wrong type", lambda env: export_model(42, env.folder, "x"), ExportError,
     "`model` must be a Keras model or the path of a .keras file, got int"),
    ("export_model", "no such model file", lambda env: export_model(env.folder / "none.keras", env.folder, "x"),
     ExportError, "`model`: no such file"),
    ("export_model", "truncated .keras file", lambda env: export_model(env.folder / "truncated.keras", env.folder, "x"),
     ExportError, "`model`: cannot load .* as a Keras model"),
    ("load_model", "truncated .keras file",
     lambda env: mlvae_tf.files.load_model(env.folder / "truncated.keras"), ModelFileError,
     "`model`: cannot load .* as a Keras model"),
    ("load_model", "text file", lambda env: mlvae_tf.files.load_model(env.folder / "file.txt"), ModelFileError,
     "`model`: cannot load"),
]

SAVEDMODEL_RULE = re.escape("images must be a [batch, 8, 8, 1] batch of finite values, batch >= 1")
GROUP_IDS_RULE = re.escape(mlvae_tf.validation.GROUP_IDS_RULE)
EXPORTED = [
    ("SavedModel encoder", "wrong shape", lambda env: env.encoder(images=tf.constant(X.reshape(6, 4, 16, 1))),
     tf.errors.InvalidArgumentError, SAVEDMODEL_RULE),
    ("SavedModel encoder", "wrong rank", lambda env: env.encoder(images=tf.constant(X[0])),
     tf.errors.InvalidArgumentError, SAVEDMODEL_RULE),
    ("SavedModel encoder", "wrong dtype", lambda env: env.encoder(images=tf.constant(X, tf.float64)),
     tf.errors.InvalidArgumentError, "expected to be a float tensor but is a double tensor"),
    ("SavedModel encoder", "empty data", lambda env: env.encoder(images=tf.constant(X[:0])),
     tf.errors.InvalidArgumentError, SAVEDMODEL_RULE),
    ("SavedModel encoder", "NaN", lambda env: env.encoder(images=tf.constant(NAN)),
     tf.errors.InvalidArgumentError, SAVEDMODEL_RULE),
    ("SavedModel encoder", "Inf", lambda env: env.encoder(images=tf.constant(INF)),
     tf.errors.InvalidArgumentError, SAVEDMODEL_RULE),
    ("SavedModel group encoder", "ids of the wrong length",
     lambda env: env.group_encoder(images=tf.constant(X), group_ids=tf.constant(IDS[:5])),
     tf.errors.InvalidArgumentError, GROUP_IDS_RULE),
    ("SavedModel group encoder", "negative ids",
     lambda env: env.group_encoder(images=tf.constant(X), group_ids=tf.constant([0, 0, 1, 1, -1, 2])),
     tf.errors.InvalidArgumentError, GROUP_IDS_RULE),
    ("SavedModel group encoder", "a gap in the ids (an empty group)",
     lambda env: env.group_encoder(images=tf.constant(X), group_ids=tf.constant([0, 0, 1, 1, 3, 3])),
     tf.errors.InvalidArgumentError, GROUP_IDS_RULE),
    ("SavedModel group encoder", "int64 ids",
     lambda env: env.group_encoder(images=tf.constant(X), group_ids=tf.constant(IDS, tf.int64)),
     tf.errors.InvalidArgumentError, "expected to be a int32 tensor but is a int64 tensor"),
    ("SavedModel decoder", "wrong latent size",
     lambda env: env.decoder(content=tf.zeros((2, CONTENT_DIM - 1)), style=tf.zeros((2, STYLE_DIM))),
     tf.errors.InvalidArgumentError, re.escape("content must be a [batch, 5] batch of finite values")),
    ("SavedModel decoder", "rows that differ",
     lambda env: env.decoder(content=tf.zeros((2, CONTENT_DIM)), style=tf.zeros((3, STYLE_DIM))),
     tf.errors.InvalidArgumentError, "content and style must have the same number of rows"),
    ("SavedModel decoder", "NaN",
     lambda env: env.decoder(content=tf.fill((2, CONTENT_DIM), np.nan), style=tf.zeros((2, STYLE_DIM))),
     tf.errors.InvalidArgumentError, re.escape("content must be a [batch, 5] batch of finite values")),
    ("ONNX encoder", "wrong shape", lambda env: env.onnx["encoder"].run(None, {"images": X.reshape(6, 4, 16, 1)}),
     ort.capi.onnxruntime_pybind11_state.InvalidArgument, "Got invalid dimensions for input: images"),
    ("ONNX encoder", "wrong dtype", lambda env: env.onnx["encoder"].run(None, {"images": X.astype(np.float64)}),
     ort.capi.onnxruntime_pybind11_state.InvalidArgument, r"Actual: \(tensor\(double\)\) , expected: \(tensor\(float"),
    ("ONNX encoder", "empty data", lambda env: env.onnx["encoder"].run(None, {"images": X[:0]}),
     ort.capi.onnxruntime_pybind11_state.Fail, "images_must_be_finite_batch_8x8x1/check"),
    ("ONNX encoder", "NaN", lambda env: env.onnx["encoder"].run(None, {"images": NAN}),
     ort.capi.onnxruntime_pybind11_state.Fail, "images_must_be_finite_batch_8x8x1/check"),
    ("ONNX group encoder", "ids of the wrong length",
     lambda env: env.onnx["group_encoder"].run(None, {"images": X, "group_ids": IDS[:5]}),
     ort.capi.onnxruntime_pybind11_state.Fail, mlvae_tf.validation.GUARD_SCOPE),
    ("ONNX group encoder", "ids out of range",
     lambda env: env.onnx["group_encoder"].run(None, {"images": X, "group_ids": np.array([0, 0, 1, 1, 3, 3], np.int32)}),
     ort.capi.onnxruntime_pybind11_state.Fail, mlvae_tf.validation.GUARD_SCOPE),
    ("ONNX group encoder", "int64 ids",
     lambda env: env.onnx["group_encoder"].run(None, {"images": X, "group_ids": IDS.astype(np.int64)}),
     ort.capi.onnxruntime_pybind11_state.InvalidArgument, r"expected: \(tensor\(int32\)\)"),
    ("ONNX decoder", "rows that differ",
     lambda env: env.onnx["decoder"].run(None, {"content": np.zeros((2, CONTENT_DIM), np.float32),
                                                "style": np.zeros((3, STYLE_DIM), np.float32)}),
     ort.capi.onnxruntime_pybind11_state.Fail, "content_and_style_must_have_the_same_number_of_rows/check"),
]


def _ids(cases):
    return [f"{entry}: {case}" for entry, case, *_ in cases]


@pytest.mark.parametrize("entry, case, call, error, match", PYTHON_API, ids=_ids(PYTHON_API))
def test_the_python_api_refuses_bad_input_in_one_line(env, entry, case, call, error, match):
    with pytest.raises(error, match=match) as raised:
        call(env)
    if issubclass(error, ValueError):  # the API's own errors: one line, raised before any graph runs
        assert len(str(raised.value).strip().splitlines()) == 1, str(raised.value)


@pytest.mark.parametrize("entry, case, call, error, match", EXPORTED, ids=_ids(EXPORTED))
def test_the_exported_models_refuse_bad_input(env, entry, case, call, error, match):
    with pytest.raises(error, match=match):
        call(env)


@pytest.mark.parametrize("case, kwargs, match", [
    ("unknown data set", dict(name_or_builder="no_such_data_set_xyz"), "`name_or_builder`: no TFDS data set"),
    ("name of the wrong type", dict(name_or_builder=42), "`name_or_builder` must be a TFDS name or DatasetBuilder"),
    ("missing group feature", dict(group_key="colour"), "`group_key`: mnist has no feature 'colour'"),
    ("group feature not a scalar", dict(group_key="image"), "`group_key`: feature 'image' of mnist must be a scalar"),
    ("missing image feature", dict(image_key="picture"), "`image_key`: mnist has no feature 'picture'"),
    ("groups_per_batch 0", dict(groups_per_batch=0), "`groups_per_batch` must be an integer >= 1, got 0"),
    ("streamed without a window", dict(in_memory=False), "`max_group_size` is needed to stream"),
])
def test_from_tfds_refuses_bad_input_in_one_line(case, kwargs, match):
    arguments = {"name_or_builder": "mnist", "group_key": "label", "download": False, **kwargs}
    with tfds.testing.mock_data(num_examples=12), pytest.raises(ValueError, match=match) as raised:
        from_tfds(**arguments)
    assert len(str(raised.value).strip().splitlines()) == 1


COMMANDS = [
    (["train", "--config", "{folder}/none.yaml"], "--config: no such file"),
    (["train", "--config", "{folder}/list.yaml"], "config section `(top level)` must be a mapping, got list"),
    (["train", "--config", "{folder}/section.yaml"], "config section `model` must be a mapping, got int"),
    (["train", "--config", "{folder}/broken.yaml"], "is not valid YAML"),
    (["train", "--set", "model.content_dim=abc"], "config key `model.content_dim` must be an integer >= 1, or a mapping {group_key: integer >= 1}, got 'abc'"),
    (["train", "--set", "model.style_dim=0"], "config key `model.style_dim` must be an integer >= 1, got 0"),
    (["train", "--set", "model.content_dim=[1, 2]"], "config key `model.content_dim` must be an integer >= 1"),
    (["train", "--set", "train.epochs=-1"], "config key `train.epochs` must be an integer >= 1"),
    (["train", "--set", "nokey=1"], "unknown config key `nokey`"),
    (["train", "--set", "model.content_dim"], "override 'model.content_dim' must look like section.key=value"),
    (["train", "--set", "data.name=cifar"], "config key `data.name` must be one of"),
    (["train", "--set", "data.group_key=[label, pen]", "--runs-dir", "{folder}/runs"],
     "config section `data`: `group_key`: digits has one label, \"label\"; got ['label', 'pen']"),
    (["train", "--set", "name=../../x"], "config key `name` must be a plain folder name"),
    (["train", "--runs-dir", "{folder}/file.txt"], "--runs-dir must be a folder"),
    (["evaluate", "--model", "{folder}/none.keras"], "--model: no such file"),
    (["evaluate", "--model", "{folder}/truncated.keras", "--data", "digits"], "--model: cannot load"),
    (["evaluate", "--model", "{folder}/model.keras", "--trials", "0"], "argument --trials: must be an integer >= 1"),
    (["evaluate", "--model", "{folder}/model.keras", "--K", "abc"], "argument --K: must be an integer >= 1, got 'abc'"),
    (["evaluate", "--model", "{folder}/model.keras", "--data", "cifar"], "argument --data: invalid choice: 'cifar'"),
    (["evaluate", "--model", "{folder}/model.keras", "--out", "{folder}/file.txt"], "--out must be a folder"),
    (["export", "--model", "{folder}/none.keras", "--name", "x"], "--model: no such file"),
    (["export", "--model", "{folder}/truncated.keras", "--name", "x"], "--model: cannot load"),
    (["export", "--model", "{folder}/model.keras", "--name", "../x"], "`name` must be a plain folder name"),
    (["export", "--model", "{folder}/model.keras", "--name", "x", "--version", "abc"],
     "argument --version: invalid int value"),
    (["export", "--model", "{folder}/model.keras", "--name", "x", "--out", "{folder}/file.txt"],
     "`out` must be a folder"),
    (["info"], "the following arguments are required: --model"),
    (["info", "--model", "{folder}/none.keras"], "--model: no such file"),
    (["info", "--model", "{folder}/truncated.keras"], "--model: cannot load"),
    (["compare", "--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
    (["compare", "--trials", "-2"], "argument --trials: must be an integer >= 1"),
    (["compare", "--set", "model.kind=gan"], "config key `model.kind` must be one of"),
    (["train", "--set", "model.penalty_weight=-1"], "config key `model.penalty_weight` must be a number >= 0"),
    (["train", "--set", "model.inference_steps=0"], "config key `model.inference_steps` must be an integer >= 1"),
    (["compare", "--models", "{folder}/none.keras"], "--models: no such file"),
    (["bogus"], "argument command: invalid choice: 'bogus'"),
    ([], "the following arguments are required: command"),
]


@pytest.mark.parametrize("args, message", COMMANDS, ids=[" ".join(args) or "(none)" for args, _ in COMMANDS])
def test_every_command_answers_bad_input_with_one_line(env, args, message, capsys):
    (env.folder / "list.yaml").write_text("- a\n- b\n")
    (env.folder / "section.yaml").write_text("model: 5\n")
    (env.folder / "broken.yaml").write_text("model: {content_dim: 3\n")
    status, _, err = run_cli(capsys, *(a.format(folder=env.folder) for a in args))
    assert_one_line_error(status, err, message)
    assert not (env.folder / "x").exists()
