"""`make demo`'s entry point runs end to end: trains, saves, evaluates, exports, and prints the ONNX prediction."""

import json

import keras
import numpy as np
import onnxruntime as ort
import pytest

import mlvae_tf
from mlvae_tf import demo


@pytest.mark.slow
def test_demo_trains_saves_exports_and_its_onnx_encoder_matches_keras(tmp_path, capsys):
    summary = demo.main(["--epochs", "2", "--out", str(tmp_path / "run"), "--export", str(tmp_path / "savedmodels")])
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary and summary["epochs"] == 2
    metrics = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    assert metrics["settings"]["K"] == 6 and metrics["settings"]["trials"] == 5  # the default config's protocol
    # The ONNX encoder against the saved Keras model, computed here rather than read from the demo.
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    image = mlvae_tf.data.digits_splits(seed=0)["test"][0][:1]
    session = ort.InferenceSession(str(tmp_path / "savedmodels" / "digits" / "onnx" / "encoder.onnx"))
    names = [o.name for o in session.get_outputs()]
    onnx_mean = dict(zip(names, session.run(names, {"images": image})))["content_mean"]
    difference = np.abs(onnx_mean - model.encode(image)["content_mean"].numpy()).max()
    assert difference < 1e-5
    assert float(out.split("largest difference:")[1].split()[0]) == pytest.approx(difference, abs=1e-6)
    assert "content_mean of one test image, ONNX Runtime:" in out
