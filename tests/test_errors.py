"""Bad input beyond the matrix of tests/test_bad_inputs.py: the baselines' own arguments, untrusted
files, paths that would leave their folder, and the offline guard."""

import numpy as np
import pytest

import mlvae_tf
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM

X = np.random.default_rng(0).uniform(size=(6, *INPUT_SHAPE)).astype(np.float32)


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
