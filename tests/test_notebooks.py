"""Every notebook runs top to bottom (its own asserts check its outputs), so a broken notebook fails CI."""

import pathlib

import nbclient
import nbformat
import pytest

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path):
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "largest difference from Keras:" in text
    if path.name == "quickstart.ipynb":  # what it saved and exported, checked here rather than by its own prints
        _check_quickstart_outputs(path.parent.parent)


def _check_quickstart_outputs(root):
    import keras
    import numpy as np
    import onnxruntime as ort

    import mlvae_tf

    model = keras.models.load_model(root / "runs" / "quickstart" / "model.keras")
    x = mlvae_tf.data.digits_splits(seed=0)["test"][0][:9]
    session = ort.InferenceSession(str(root / "savedmodels" / "quickstart" / "onnx" / "encoder.onnx"))
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(names, {"images": x})))
    for key, value in model.encode(x).items():
        np.testing.assert_allclose(onnx_out[key], value, atol=1e-5, err_msg=key)


def test_there_is_a_quickstart():
    assert "quickstart.ipynb" in [p.name for p in NOTEBOOKS]
