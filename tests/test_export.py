"""Export: SavedModel and ONNX parity with Keras, signatures, TF Serving request formats, atomic writes."""

import json
import os
import pathlib
import re
import signal
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from export import ExportError, export_model, serving
from mlvae_tf.grouping import product_of_normals
from tests.conftest import child, run, wait_for

BATCHES = (1, 7, 256)

# Runs in a fresh interpreter in which `import mlvae_tf` fails: the SavedModel must stand alone.
_SAVEDMODEL_RUNNER = """
import sys
sys.modules["mlvae_tf"] = None
try:
    import mlvae_tf
    raise SystemExit("mlvae_tf is importable")
except ImportError:
    pass
import numpy as np, tensorflow as tf
root, inputs, outputs = sys.argv[1:]
data = dict(np.load(inputs))
encoder = tf.saved_model.load(root + "/encoder/1").signatures
decoder = tf.saved_model.load(root + "/decoder/1").signatures
result = {}
for n in %r:
    x = tf.constant(data[f"images_{n}"])
    for k, v in encoder["serving_default"](images=x).items():
        result[f"encoder_{n}_{k}"] = v.numpy()
    for k, v in encoder["encode_groups"](images=x, group_ids=tf.constant(data[f"group_ids_{n}"])).items():
        result[f"group_encoder_{n}_{k}"] = v.numpy()
    for k, v in decoder["serving_default"](content=tf.constant(data[f"content_{n}"]), style=tf.constant(data[f"style_{n}"])).items():
        result[f"decoder_{n}_{k}"] = v.numpy()
np.savez(outputs, **result)
""" % (BATCHES,)


def _inputs(model, digits_split):
    x, labels = digits_split["test"]
    rng = np.random.default_rng(0)
    data = {}
    for n in BATCHES:
        data[f"images_{n}"] = x[:n]
        data[f"group_ids_{n}"] = np.unique(labels[:n], return_inverse=True)[1].astype(np.int32)
        data[f"content_{n}"] = rng.normal(size=(n, model.content_dim)).astype(np.float32)
        data[f"style_{n}"] = rng.normal(size=(n, model.style_dim)).astype(np.float32)
    return data


def _keras_outputs(model, data, n):
    return {
        "encoder": model.encode(data[f"images_{n}"]),
        "group_encoder": model.encode_groups(data[f"images_{n}"], data[f"group_ids_{n}"]),
        "decoder": model.decode_params(data[f"content_{n}"], data[f"style_{n}"]),
    }


@pytest.mark.slow
def test_savedmodel_in_a_process_without_mlvae_tf_matches_keras(exported, digits_split, tmp_path):
    model, root = exported
    data = _inputs(model, digits_split)
    np.savez(tmp_path / "inputs.npz", **data)
    run([sys.executable, "-c", _SAVEDMODEL_RUNNER, root, tmp_path / "inputs.npz", tmp_path / "outputs.npz"],
        cwd=tmp_path)
    served = np.load(tmp_path / "outputs.npz")
    for n in BATCHES:
        for part, expected in _keras_outputs(model, data, n).items():
            for key, value in expected.items():
                np.testing.assert_allclose(served[f"{part}_{n}_{key}"], value, atol=1e-5, err_msg=f"{part} {key} {n}")


def test_onnx_runtime_matches_keras(exported, digits_split):
    model, root = exported
    data = _inputs(model, digits_split)
    sessions = {part: ort.InferenceSession(str(root / "onnx" / f"{part}.onnx"))
                for part in ("encoder", "group_encoder", "decoder")}
    feeds = {"encoder": ("images",), "group_encoder": ("images", "group_ids"), "decoder": ("content", "style")}
    for n in BATCHES:
        inputs = {"images": data[f"images_{n}"], "group_ids": data[f"group_ids_{n}"],
                  "content": data[f"content_{n}"], "style": data[f"style_{n}"]}
        for part, expected in _keras_outputs(model, data, n).items():
            session = sessions[part]
            names = [o.name for o in session.get_outputs()]
            assert sorted(names) == sorted(expected)
            got = dict(zip(names, session.run(names, {k: inputs[k] for k in feeds[part]})))
            for key, value in expected.items():
                np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=f"{part} {key} {n}")


# Tiny untrained models of the kinds the session's trained model is not: the decoder's `log_var`
# (learned variance), the paper's fixed-variance Normal with the mixture's group encoder, the
# MS-Celeb-1M network (batch normalisation and transposed convolutions through tf2onnx) and the
# "spatial" decoder (its bilinear warp's gathers) and the "equivariant" encoder (its turned copies,
# symmetric convolutions and circular mean).
VARIANTS = {
    "mlp-normal": dict(likelihood="normal"),
    "mlp-normal_fixed-mixture": dict(likelihood="normal_fixed", aggregation="mixture"),
    "conv64-normal": dict(architecture="conv64", input_shape=(64, 64, 3), likelihood="normal"),
    "spatial-normal": dict(architecture="spatial", input_shape=(6, 10, 3), style_dim=5, likelihood="normal"),
    "equivariant": dict(architecture="equivariant", input_shape=(8, 8, 3), style_dim=4),
    "vae": dict(kind="VAE"),
    "regularised-vae": dict(kind="RegularisedVAE", likelihood="normal"),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory):
    """(model, export root) of one of `VARIANTS`, with batch normalisation's moving statistics
    away from their initial 0 and 1 so that inference-mode normalisation is exercised."""
    import mlvae_tf
    from tests.conftest import make_tiny_model

    settings = dict(VARIANTS[request.param])
    model = make_tiny_model(**settings) if "kind" not in settings else getattr(mlvae_tf, settings.pop("kind"))(
        input_shape=(8, 8, 1), content_dim=5, style_dim=3, hidden_units=17, seed=0, **settings)
    model.encode(np.zeros((1, *model.input_shape), np.float32))  # builds the model
    model.decode(np.zeros((1, model.content_dim), np.float32), np.zeros((1, model.style_dim), np.float32))
    rng = np.random.default_rng(1)
    for weight in model.weights:
        if "moving_mean" in weight.path or "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype(np.float32))
    out = tmp_path_factory.mktemp(request.param)
    export_model(model, out, request.param)
    return model, out / request.param


@pytest.mark.slow
def test_every_kind_of_model_exports_with_parity_in_savedmodel_and_onnx(variant):
    model, root = variant
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, *model.input_shape)).astype(np.float32)
    group_ids = np.array([1, 0, 1, 1, 0], np.int32)
    content = rng.normal(size=(5, model.content_dim)).astype(np.float32)
    style = rng.normal(size=(5, model.style_dim)).astype(np.float32)
    expected = {"encoder": model.encode(x), "group_encoder": model.encode_groups(x, group_ids),
                "decoder": model.decode_params(content, style)}
    assert ("log_var" in expected["decoder"]) == (model.likelihood == "normal")
    if getattr(model, "aggregation", None) == "mixture":  # its group posterior is not the product's, which an export could fall back on
        product = product_of_normals(expected["encoder"]["content_mean"], expected["encoder"]["content_log_var"],
                                     group_ids, 2)
        assert np.abs(product[1] - expected["group_encoder"]["content_log_var"]).max() > 0.1
    encoder = tf.saved_model.load(str(root / "encoder" / "1")).signatures
    decoder = tf.saved_model.load(str(root / "decoder" / "1")).signatures
    served = {"encoder": encoder["serving_default"](images=tf.constant(x)),
              "group_encoder": encoder["encode_groups"](images=tf.constant(x), group_ids=tf.constant(group_ids)),
              "decoder": decoder["serving_default"](content=tf.constant(content), style=tf.constant(style))}
    feeds = {"encoder": {"images": x}, "group_encoder": {"images": x, "group_ids": group_ids},
             "decoder": {"content": content, "style": style}}
    for part, values in expected.items():
        session = ort.InferenceSession(str(root / "onnx" / f"{part}.onnx"))
        names = [o.name for o in session.get_outputs()]
        onnx_out = dict(zip(names, session.run(names, feeds[part])))
        assert sorted(names) == sorted(values) == sorted(served[part])
        for key, value in values.items():
            np.testing.assert_allclose(served[part][key], value, atol=1e-5, err_msg=f"SavedModel {part} {key}")
            got = onnx_out[key]
            if key == "style_mean" and model.architecture == "equivariant":
                # The angle is the atan2 of a circular mean whose weights, untrained, are near uniform:
                # it magnifies ONNX Runtime's convolution rounding (1e-7) to 1e-4 (1e-6 once peaked).
                np.testing.assert_allclose(got[:, 0], value[:, 0], atol=1e-3, err_msg=f"ONNX {part} angle")
                got, value = got[:, 1:], np.asarray(value)[:, 1:]
            np.testing.assert_allclose(got, value, atol=1e-5, err_msg=f"ONNX {part} {key}")


@pytest.mark.parametrize("group_ids", [[0, 1, -1, -1, -1], [0, 2, 2, 0, 2], [0, -3, 1, 1, 0]],
                         ids=["padding", "gap", "negative"])
def test_bad_group_ids_are_refused_alike_by_keras_savedmodel_serving_and_onnx(exported, digits_split, group_ids):
    """One contract in every format: ids in [0, G), every group non-empty; padding (-1), a gap
    (group 1 empty, which would silently be the prior) or other negative ids are refused."""
    from mlvae_tf.validation import GROUP_IDS_RULE, GUARD_SCOPE

    model, root = exported
    x, group_ids = digits_split["test"][0][:5], np.array(group_ids, np.int32)
    with pytest.raises(ValueError, match="group_ids|group 1 has no observations"):
        model.encode_groups(x, group_ids)
    encoder = tf.saved_model.load(str(root / "encoder" / "1")).signatures["encode_groups"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(GROUP_IDS_RULE)):
        encoder(images=tf.constant(x), group_ids=tf.constant(group_ids))
    body = {"inputs": {"images": x.tolist(), "group_ids": group_ids.tolist()}}
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(GROUP_IDS_RULE)):
        serving.rest_predict(encoder, body)
    session = ort.InferenceSession(str(root / "onnx" / "group_encoder.onnx"))
    with pytest.raises(Exception, match=GUARD_SCOPE):
        session.run(None, {"images": x, "group_ids": group_ids})
    # The same images with good ids: the three agree.
    good = np.array([0, 1, 2, 2, 0], np.int32)
    expected = model.encode_groups(x, good)
    served = encoder(images=tf.constant(x), group_ids=tf.constant(good))
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(names, {"images": x, "group_ids": good})))
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value, atol=1e-5)
        np.testing.assert_allclose(onnx_out[key], value, atol=1e-5)


def test_onnx_files_pass_the_checker_and_have_a_dynamic_batch(exported):
    _, root = exported
    for part in ("encoder", "group_encoder", "decoder"):
        proto = onnx.load(str(root / "onnx" / f"{part}.onnx"))
        onnx.checker.check_model(proto, full_check=True)
        for tensor in proto.graph.input:
            assert not tensor.type.tensor_type.shape.dim[0].HasField("dim_value")  # symbolic batch


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(exported):
    _, root = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    encoder = run([cli, "show", "--dir", root / "encoder" / "1", "--all"]).stdout
    for name in ("signature_def['serving_default']", "signature_def['encode_groups']", "inputs['images']",
                 "inputs['group_ids']", "outputs['style_mean']", "outputs['style_log_var']",
                 "outputs['content_mean']", "outputs['content_log_var']"):
        assert name in encoder, name
    # The decoder in process (saved_model_cli reads the same signature defs; one start of it is enough).
    decoder = tf.saved_model.load(str(root / "decoder" / "1")).signatures
    assert list(decoder) == ["serving_default"]
    assert sorted(decoder["serving_default"].structured_input_signature[1]) == ["content", "style"]
    assert sorted(decoder["serving_default"].structured_outputs) == ["mean"]  # Bernoulli: no log_var


def test_manifest_describes_the_export_and_checksums_every_file(exported):
    import hashlib

    model, root = exported
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["input_shape"] == list(model.input_shape) and manifest["content_dim"] == model.content_dim
    assert manifest["style_dim"] == model.style_dim and manifest["likelihood"] == model.likelihood
    assert manifest["packages"]["tensorflow"] == tf.__version__
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(manifest["files"]) == on_disk and "onnx/group_encoder.onnx" in on_disk
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    # The input contract names every input of every exported graph, with the dtype it really takes.
    contract, seen = manifest["inputs"], set()
    for part in ("encoder", "group_encoder", "decoder"):
        for spec in ort.InferenceSession(str(root / "onnx" / f"{part}.onnx")).get_inputs():
            dtype = {"tensor(float)": "float32", "tensor(int32)": "int32"}[spec.type]
            assert contract[spec.name].startswith(dtype + " "), (spec.name, spec.type)
            seen.add(spec.name)
    assert seen == set(contract) and "[0, 1]" in contract["images"] and "[0, G)" in contract["group_ids"]


def test_tf_serving_rest_and_grpc_requests(exported, digits_split):
    model, root = exported
    x, labels = digits_split["test"]
    x, group_ids = x[:5], np.array([0, 1, 0, 1, 2], np.int32)
    encoder = tf.saved_model.load(str(root / "encoder" / "1")).signatures
    expected = model.encode(x)
    body = json.loads(json.dumps({"instances": x.tolist()}))  # as it arrives over HTTP
    rows = serving.rest_predict(encoder["serving_default"], body)["predictions"]
    assert len(rows) == 5
    for key, value in expected.items():
        np.testing.assert_allclose(np.array([row[key] for row in rows]), value, atol=1e-5)
    body = json.loads(json.dumps({"signature_name": "encode_groups",
                                  "inputs": {"images": x.tolist(), "group_ids": group_ids.tolist()}}))
    columns = serving.rest_predict(encoder[body["signature_name"]], body)["outputs"]
    for key, value in model.encode_groups(x, group_ids).items():
        np.testing.assert_allclose(np.array(columns[key]), value, atol=1e-5)

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "encode_groups"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
    request.inputs["group_ids"].CopyFrom(tf.make_tensor_proto(group_ids))
    response = predict_pb2.PredictResponse.FromString(serving.grpc_predict(encoder, request).SerializeToString())
    for key, value in model.encode_groups(x, group_ids).items():
        np.testing.assert_allclose(tf.make_ndarray(response.outputs[key]), value, atol=1e-5)


FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "serving"


@pytest.fixture(scope="module")
def reference_signatures(tmp_path_factory):
    """SavedModels of the models in TF Serving's documented exchanges (`tests/fixtures/serving`)."""

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": 0.5 * x + 2.0}

    class TwoInputs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="a"),
                                      tf.TensorSpec([None], tf.float32, name="b")])
        def __call__(self, a, b):
            return {"sum": tf.reduce_sum(a, 1) + b, "scaled": 2.0 * a}

    loaded = {}
    for name, module in (("half_plus_two", HalfPlusTwo()), ("two_inputs_two_outputs", TwoInputs())):
        path = str(tmp_path_factory.mktemp(name))
        tf.saved_model.save(module, path, signatures=module.__call__)
        loaded[name] = tf.saved_model.load(path).signatures
    return loaded


@pytest.mark.parametrize("name", ["half_plus_two", "two_inputs_two_outputs"])
def test_rest_answers_tf_servings_documented_exchanges(reference_signatures, name):
    """The emulator against request and response bodies written in TF Serving's documented REST
    formats, not against itself."""
    for exchange in json.loads((FIXTURES / f"{name}.json").read_text())["exchanges"]:
        request = exchange["request"]
        signature = reference_signatures[name][request.get("signature_name", "serving_default")]
        assert json.loads(json.dumps(serving.rest_predict(signature, request))) == exchange["response"]


def test_grpc_answers_tf_servings_documented_exchange(reference_signatures):
    from google.protobuf import text_format
    from tensorflow_serving.apis import predict_pb2

    request = text_format.Parse((FIXTURES / "half_plus_two_request.pbtxt").read_text(), predict_pb2.PredictRequest())
    expected = text_format.Parse((FIXTURES / "half_plus_two_response.pbtxt").read_text(), predict_pb2.PredictResponse())
    response = serving.grpc_predict(reference_signatures["half_plus_two"], request)
    assert response.model_spec == expected.model_spec and sorted(response.outputs) == sorted(expected.outputs)
    for key, proto in expected.outputs.items():
        assert response.outputs[key].dtype == proto.dtype
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[key]), tf.make_ndarray(proto))


def test_second_export_without_overwrite_fails_and_changes_nothing(exported, tmp_path):
    model, root = exported
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    with pytest.raises(ExportError, match="encoder/1 already exists; pass --overwrite"):
        export_model(model, root.parent, "digits")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_export_command_versions_overwrite_and_errors(tmp_path, capsys):
    import mlvae_tf
    from tests.conftest import run_cli

    first = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=3, seed=1)
    second = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=5, seed=2)
    for model, name in ((first, "first"), (second, "second")):
        model.encode(np.zeros((1, 8, 8, 1), np.float32))
        model.save(tmp_path / f"{name}.keras")
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)

    def served(version):
        encoder = tf.saved_model.load(str(tmp_path / "m" / "encoder" / str(version))).signatures["serving_default"]
        return encoder(images=x)["content_mean"]

    export = ["export", "--out", tmp_path, "--name", "m", "--formats", "savedmodel"]
    assert run_cli(capsys, *export, "--model", tmp_path / "first.keras")[0] == 0
    status, out, _ = run_cli(capsys, *export, "--model", tmp_path / "second.keras", "--version", 2)
    assert status == 0 and "Exported" in out
    assert sorted(p.name for p in (tmp_path / "m" / "encoder").iterdir()) == ["1", "2"]
    np.testing.assert_allclose(served(1), first.encode(x)["content_mean"], atol=1e-6)  # version 1 kept
    np.testing.assert_allclose(served(2), second.encode(x)["content_mean"], atol=1e-6)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["version"] == 2
    status, _, err = run_cli(capsys, *export, "--model", tmp_path / "first.keras", "--version", 2)
    assert status == 1 and err.startswith("mlvae export: error:") and len(err.strip().splitlines()) == 1, err
    assert "encoder/2 already exists; pass --overwrite" in err
    np.testing.assert_allclose(served(2), second.encode(x)["content_mean"], atol=1e-6)  # unchanged
    assert run_cli(capsys, *export, "--model", tmp_path / "first.keras", "--version", 2, "--overwrite")[0] == 0
    np.testing.assert_allclose(served(2), first.encode(x)["content_mean"], atol=1e-6)
    for args, message in (([*export, "--model", tmp_path / "missing.keras"], "--model: no such file"),
                          ([*export, "--model", tmp_path / "first.keras", "--version", 0], "`version` must be"),
                          ([*export, "--model", tmp_path / "first.keras", "--formats", "tflite"], "`formats` must"),
                          (["export", "--model", tmp_path / "first.keras", "--name", "../x"], "`name` must be")):
        status, _, err = run_cli(capsys, *args)
        assert status != 0 and len(err.strip().splitlines()) == 1 and message in err, err
        assert "Traceback" not in err


_KILLED_EXPORT = """
import sys, time, pathlib
import mlvae_tf
from export import exporter, savedmodel
write = savedmodel.write_encoder
def slow_write(model, path):
    write(model, path)
    pathlib.Path(sys.argv[2]).touch()   # the version is half-way: written, not yet renamed
    time.sleep(60)
exporter.savedmodel.write_encoder = slow_write
exporter.export_model(mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=3),
                      sys.argv[1], "killed", formats=["savedmodel"])
"""


@pytest.mark.slow
def test_killed_export_leaves_no_version_folder_and_the_next_export_succeeds(tmp_path):
    marker = tmp_path / "written"
    with child([sys.executable, "-c", _KILLED_EXPORT, tmp_path, marker]) as process:
        wait_for(marker.exists, process)  # the export reached the write
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    versions = tmp_path / "killed" / "encoder"
    assert not (versions / "1").exists()
    assert [p.name for p in versions.iterdir() if p.name.isdigit()] == []
    import mlvae_tf

    export_model(mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=3), tmp_path,
                 "killed", formats=["savedmodel"])
    assert (versions / "1" / "saved_model.pb").exists()
    assert sorted(p.name for p in versions.iterdir()) == ["1"]  # the killed export's temporary folder is gone


def test_overwrite_replaces_a_version_in_place(tmp_path):
    import mlvae_tf

    first = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=3, seed=1)
    second = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=5, seed=2)
    export_model(first, tmp_path, "m", formats=["savedmodel"])
    export_model(second, tmp_path, "m", formats=["savedmodel"], overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m" / "encoder").iterdir()) == ["1"]
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 1)).astype(np.float32)
    served = tf.saved_model.load(str(tmp_path / "m" / "encoder" / "1")).signatures["serving_default"](images=x)
    np.testing.assert_allclose(served["content_mean"], second.encode(x)["content_mean"], atol=1e-6)
