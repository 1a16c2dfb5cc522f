"""`make demo`'s entry point runs end to end: trains, saves, exports, and prints the ONNX prediction."""

import json
import subprocess
import sys


def test_demo_trains_saves_exports_and_compares_onnx(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mlvae_tf.demo", "--epochs", "2", "--out", str(tmp_path / "run"),
         "--export", str(tmp_path / "savedmodels")],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and (tmp_path / "run" / "model.keras").exists()
    assert (tmp_path / "savedmodels" / "digits" / "encoder" / "1" / "saved_model.pb").exists()
    assert (tmp_path / "savedmodels" / "digits" / "onnx" / "encoder.onnx").exists()
    assert "content_mean of one test image, ONNX Runtime:" in result.stdout
    difference = float(result.stdout.split("largest difference:")[1].split()[0])
    assert difference < 1e-5
