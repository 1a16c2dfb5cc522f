"""The `mlvae` command driven as a user would: train, resume after a kill, evaluate, export, info, errors."""

import csv
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from tests.conftest import assert_one_line_error, child, run, run_cli, wait_for

MLVAE = [os.path.join(os.path.dirname(sys.executable), "mlvae")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, check=True):
    return run(MLVAE + list(args), check=check, cwd=ROOT)


def _epochs(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    result = _run("train", "--config", "configs/digits.yaml", "--set", "train.epochs=1", "--set",
                  "train.grid_every=1", "--runs-dir", str(runs))
    (run_dir,) = [os.path.join(runs, "digits", d) for d in os.listdir(runs / "digits") if not d.startswith(".")]
    return run_dir, result


@pytest.mark.slow
def test_train_one_epoch_from_the_default_config_fills_the_run_folder(one_epoch_run):
    run_dir, result = one_epoch_run
    assert run_dir in result.stdout and "Done: 1 epochs" in result.stdout
    # Not a terminal: one plain line per epoch, not a bar redrawn with carriage returns and colours.
    lines = result.stdout.splitlines()
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    assert re.match(r"(\d+)/\1 - \d+s - .* - val_loss: ", lines[0]) and lines[1].startswith("Done: ")
    # The paper's model with unit KL weights: its loss is the negative ELBO.
    loss, elbo = map(float, re.search(r"final val_loss (\S+) \(negative ELBO per group (\S+)\)", lines[1]).groups())
    assert elbo == pytest.approx(loss, abs=0.011)  # both printed to 0.01
    for name in ("config.yaml", "history.csv", "model.keras", "best.keras", "checkpoints/epoch_001.keras"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    assert _epochs(run_dir) == [1]  # numbered as the checkpoints
    images = os.path.join(run_dir, "logs", "images")
    tags = [(value.tag, event.step) for name in os.listdir(images)
            for event in tf.compat.v1.train.summary_iterator(os.path.join(images, name))
            for value in event.summary.value]
    assert tags == [("swap_grid", 1)]  # the swap grid of epoch 1 (train.grid_every=1)
    assert not os.path.exists(os.path.join(os.path.dirname(run_dir), ".backup"))  # a finished run leaves no backup


@pytest.mark.slow
def test_an_interrupted_train_says_so_refuses_another_config_and_resumes_where_it_stopped(tmp_path, capsys):
    # Batches of one observation make an epoch last seconds, so Ctrl-C lands in the second epoch.
    args = ["train", "--set", "train.epochs=3", "--set", "data.groups_per_batch=1", "--set", "data.max_group_size=1",
            "--set", "model.hidden_units=32", "--runs-dir", str(tmp_path)]
    with child(MLVAE + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        checkpoint = wait_for(lambda: next((os.path.join(r, f) for r, _, files in os.walk(tmp_path) for f in files
                                            if f == "epoch_001.keras"), None), process)
        process.send_signal(signal.SIGINT)  # Ctrl-C
        stdout, stderr = process.communicate(timeout=120)
    run_dir = os.path.dirname(os.path.dirname(checkpoint))
    interrupted = _epochs(run_dir)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    assert f"Interrupted after epoch {len(interrupted)}; run the same command to resume." in stdout
    assert not os.path.exists(os.path.join(run_dir, "checkpoints", "epoch_003.keras"))

    record = open(os.path.join(run_dir, "config.yaml")).read()
    # The same command again, in this process (the console script is the one above).
    status, _, err = run_cli(capsys, *args, "--set", "train.learning_rate=0.0005")
    assert_one_line_error(status, err, "train.learning_rate: 0.001 -> 0.0005")
    assert "--fresh" in err and open(os.path.join(run_dir, "config.yaml")).read() == record  # nothing overwritten

    status, out, _ = run_cli(capsys, *args)
    assert status == 0 and "Resuming the interrupted run in " + run_dir in out
    assert _epochs(run_dir) == [1, 2, 3]  # the epoch count continues, no epoch repeated
    assert "Done: 3 epochs" in out  # the whole run's total
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints")))[-1] == "epoch_003.keras"


def test_train_reports_the_negative_elbo_apart_from_an_options_term(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "train", "--set", "train.epochs=1", "--set", "model.hidden_units=32", "--set",
                             "model.group_variance_weight=1000", "--runs-dir",
                             str(tmp_path))
    loss, elbo = map(float, re.search(r"final val_loss (\S+) \(negative ELBO per group (\S+)\);", out).groups())
    (run_dir,) = [os.path.join(tmp_path, "digits", d) for d in os.listdir(tmp_path / "digits") if d[0] != "."]
    with open(os.path.join(run_dir, "history.csv")) as f:
        row = list(csv.DictReader(f))[-1]
    terms = float(row["val_reconstruction"]) + float(row["val_kl_style"]) + float(row["val_kl_content"])
    assert status == 0 and elbo == pytest.approx(terms, abs=0.006)
    assert loss > elbo + 1  # the group variance's term (weight 1000 x N/G x a share in (0, 1]) is left out


def test_fresh_starts_a_new_run_and_keeps_the_interrupted_one(tmp_path):
    from mlvae_tf.config import load_config
    from mlvae_tf.training import ResumeError, _run_dir

    config = load_config(None, ["train.epochs=2"])
    interrupted, backup, resumed = _run_dir(str(tmp_path), config)
    assert not resumed
    assert _run_dir(str(tmp_path), config)[:2] == (interrupted, backup)  # the same config resumes
    changed = load_config(None, ["train.epochs=2", "model.content_dim=5"])
    with pytest.raises(ResumeError, match="model.content_dim: 10 -> 5"):
        _run_dir(str(tmp_path), changed)
    fresh, _, resumed = _run_dir(str(tmp_path), changed, fresh=True)
    assert fresh != interrupted and not resumed
    assert os.path.exists(os.path.join(interrupted, ".backup-interrupted", "run_dir"))
    assert "content_dim: 5" in open(os.path.join(fresh, "config.yaml")).read()


@pytest.mark.slow
def test_evaluate_export_and_info_on_the_trained_model(one_epoch_run, tmp_path, capsys):
    import json

    import onnx

    model = os.path.join(one_epoch_run[0], "model.keras")
    status, out, _ = run_cli(capsys, "evaluate", "--model", model, "--out", tmp_path / "report", "--ks", "1,2",
                           "--trials", "1")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert status == 0 and "content accuracy   k=1: " in out
    assert out.startswith("trial 1/1 - content k=1: ") and "\r" not in out  # one line per trial
    assert (metrics["settings"]["K"], metrics["settings"]["ks"], metrics["settings"]["trials"]) == (6, [1, 2], 1)
    assert metrics["settings"]["data"]["config"] == os.path.join(one_epoch_run[0], "config.yaml")
    assert 0.0 <= metrics["content_accuracy"]["2"]["mean"] <= 1.0
    status, out, _ = run_cli(capsys, "export", "--model", model, "--out", tmp_path / "sm", "--name", "digits",
                           "--formats", "onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "sm" / "digits" / "onnx" / "encoder.onnx")))
    assert status == 0 and not (tmp_path / "sm" / "digits" / "encoder").exists()  # onnx only, as asked
    assert out.splitlines()[0] == "file set 1/1"  # one line per written step
    manifest = json.loads((tmp_path / "sm" / "digits" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["onnx/decoder.onnx", "onnx/encoder.onnx", "onnx/group_encoder.onnx"]
    status, out, _ = run_cli(capsys, "info", "--model", model)
    info = json.loads(out)
    # The default config's model: 64-500 tanh MLP, content 10, style 3, a 3-500-64 Bernoulli decoder (count by hand).
    encoder = 64 * 500 + 500 + 500 * 2 * (10 + 3) + 2 * (10 + 3)
    decoder = (10 + 3) * 500 + 500 + 500 * 64 + 64
    assert status == 0 and (info["content_dim"], info["style_dim"]) == (10, 3)
    assert info["parameters"] == encoder + decoder
    assert info["config"]["likelihood"] == "bernoulli" and info["config"]["hidden_units"] == 500


@pytest.mark.parametrize(
    "args, message",
    [
        (["bogus"], "mlvae: error: argument command: invalid choice: 'bogus'"),
        (["train", "--set", "model.likelihood=poisson"], "mlvae train: error: config key `model.likelihood` must be"),
        (["train", "--config", "no/such.yaml"], "mlvae train: error: --config: no such file 'no/such.yaml'"),
        (["info", "--model", "missing.keras"], "mlvae info: error: --model: no such file 'missing.keras'"),
        (["evaluate", "--model", "missing.keras"], "mlvae evaluate: error: --model: no such file"),
        (["export", "--model", "missing.keras", "--name", "x"], "mlvae export: error: --model: no such file"),
    ],
)
def test_errors_exit_non_zero_with_one_clear_line(args, message, capsys):
    status, _, err = run_cli(capsys, *args)
    assert_one_line_error(status, err, message)
    assert err.startswith(message)


def test_help_lists_only_commands_that_exist(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0 and "{train,evaluate,export,info,compare}" in out


def test_train_on_data_that_cannot_be_downloaded_fails_fast_in_one_line_and_leaves_nothing(tmp_path, capsys):
    # MNIST is not prepared in an empty data_dir, and the tests' socket guard refuses the download.
    start = time.monotonic()
    status, _, err = run_cli(capsys, "train", "--set", "data.name=mnist", "--set", f"data.data_dir={tmp_path / 'tfds'}",
                           "--runs-dir", tmp_path / "runs")
    assert time.monotonic() - start < 30  # TFDS's own retries take minutes
    line = err.strip().splitlines()[-1]  # after TFDS's download progress bars
    assert status == 1 and line.startswith("mlvae train: error: TFDS data set 'mnist' is not prepared in "), err
    assert str(tmp_path / "tfds") in line and "data.data_dir" in line and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


_WITHOUT_TENSORFLOW = """
import importlib, sys
sys.argv = [{argv0!r}]  # as the shell starts the command: `mlvae`, `python -m ...`
try:
    importlib.import_module({module!r}).main({args!r})
except SystemExit:
    pass
print("TENSORFLOW" if "tensorflow" in sys.modules else "NO TENSORFLOW")
"""


@pytest.mark.parametrize("argv0, module, args", [
    ("mlvae", "mlvae_tf.cli", ["--help"]),
    ("mlvae", "mlvae_tf.cli", ["train", "--help"]),
    ("mlvae", "mlvae_tf.cli", ["evaluate", "--help"]),
    ("mlvae", "mlvae_tf.cli", ["export", "--help"]),
    ("mlvae", "mlvae_tf.cli", ["compare", "--help"]),
    ("mlvae", "mlvae_tf.cli", ["bogus"]),
    ("mlvae", "mlvae_tf.cli", ["evaluate", "--model", "missing.keras"]),
    ("mlvae", "mlvae_tf.cli", ["export", "--model", "missing.keras", "--name", "x"]),
    ("mlvae", "mlvae_tf.cli", ["compare", "--epochs", "0"]),
    ("mlvae", "mlvae_tf.cli", ["train", "--config", "missing.yaml"]),
    ("-m", "mlvae_tf.evaluate", ["--trials", "x"]),
    ("export/__main__.py", "export.__main__", ["--help"]),
])
def test_help_and_argument_errors_answer_without_importing_tensorflow(argv0, module, args):
    """`mlvae --help` and argument errors answer at once (0.05 s, against 6-8 s with TensorFlow)."""
    argv0 = os.path.join(ROOT, argv0) if "/" in argv0 else argv0
    result = run([sys.executable, "-c", _WITHOUT_TENSORFLOW.format(argv0=argv0, module=module, args=args)], cwd=ROOT)
    assert result.stdout.strip().splitlines()[-1] == "NO TENSORFLOW", result.stdout + result.stderr


def test_commands_print_no_tensorflow_startup_notes(tmp_path):
    """TensorFlow's C++ notes (oneDNN, CPU features, no CUDA driver) are held back; the command's
    own output is all that is printed."""
    from tests.conftest import make_tiny_model, random_images

    model = make_tiny_model()
    model.encode(random_images(1))
    model.save(tmp_path / "tiny.keras")
    result = _run("info", "--model", str(tmp_path / "tiny.keras"))
    assert '"content_dim": 5' in result.stdout
    assert result.stderr == "", result.stderr
    result = run([sys.executable, "-m", "export", "--model", tmp_path / "tiny.keras", "--name", "t", "--out",
                  tmp_path, "--formats", "savedmodel"], cwd=ROOT)
    assert "Exported" in result.stdout
    assert not any(note in result.stderr for note in ("oneDNN", "cuda", "absl", "I0000")), result.stderr


def test_evaluate_without_a_config_picks_evidence_sizes_the_test_classes_allow(tmp_path, capsys):
    """A saved model with no run folder, `--data digits`: the digits' smallest test class allows
    K = 6, so the evidence sizes are 1, 2, 5 and 6 (10 would be refused)."""
    import json

    from tests.conftest import make_tiny_model, random_images

    model = make_tiny_model()
    model.encode(random_images(1))
    model.save(tmp_path / "tiny.keras")
    status, out, err = run_cli(capsys, "evaluate", "--model", tmp_path / "tiny.keras", "--data", "digits",
                               "--trials", 1, "--out", tmp_path / "report")
    assert status == 0, err[-2000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["settings"]["K"] == 6 and list(metrics["content_accuracy"]) == ["1", "2", "5", "6"]


def test_train_and_evaluate_several_groupings_from_a_config(shapes_dir, tmp_path, capsys):
    """`data.group_key` a list: `mlvae train` fits a MultiLevelVAE on batches that keep the shape
    groups whole, logs each grouping's KL and one swap grid per latent; `mlvae evaluate` prints
    and writes the latent x factor matrix, the one `latent_factor_accuracy` gives on the run's split."""
    import json

    import numpy as np

    import mlvae_tf
    from mlvae_tf.evaluation import latent_factor_accuracy

    config = tmp_path / "groupings.yaml"
    config.write_text(f"""name: g
data: {{name: grouped_shapes/small, group_key: [shape, color], groups_per_batch: 8, data_dir: {shapes_dir}}}
model: {{content_dim: {{shape: 3, color: 2}}, style_dim: 3, hidden_units: 16}}
train: {{epochs: 1, grid_every: 1}}
evaluate: {{K: null, ks: [1, 4]}}
""")
    status, out, err = run_cli(capsys, "train", "--config", config, "--runs-dir", tmp_path / "runs")
    assert status == 0, err[-2000:]
    (run_dir,) = [p for p in (tmp_path / "runs" / "g").iterdir() if not p.name.startswith(".")]
    model = mlvae_tf.files.load_model(run_dir / "model.keras")
    assert model.content_dims == {"shape": 3, "color": 2}
    history = _history_row(run_dir)
    assert {"kl_shape", "kl_color", "val_kl_shape", "val_kl_color"} <= set(history)
    images = run_dir / "logs" / "images"
    tags = {value.tag for name in os.listdir(images)
            for event in tf.compat.v1.train.summary_iterator(str(images / name)) for value in event.summary.value}
    assert tags == {"swap_shape", "swap_color", "swap_style"}

    status, out, err = run_cli(capsys, "evaluate", "--model", run_dir / "model.keras", "--out", tmp_path / "report")
    assert status == 0, err[-2000:]
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    factors = ["shape", "color", "scale", "rotation", "position_x", "position_y"]
    assert list(metrics["chance"]) == factors and list(metrics["accuracy"]) == ["linear", "mlp"]
    assert list(metrics["accuracy"]["mlp"]) == ["1", "4"]
    assert list(metrics["accuracy"]["linear"]["4"]) == ["shape", "color", "style"]
    assert "linear probe" in out and "mlp probe" in out and out.count("| shape | 4 | ") == 2
    assert "| style | 1 | " in out and "| style | 4 |" not in out
    for name in ("factors_linear.png", "factors_mlp.png", "swap_shape.png", "swap_color.png", "swap_style.png"):
        assert (tmp_path / "report" / name).exists(), name
    splits = mlvae_tf.data.load_splits("grouped_shapes/small", factors, data_dir=str(shapes_dir))
    (x, labels), (y, test_labels) = splits["train"], splits["test"]
    direct = latent_factor_accuracy(model, (x[:2000], {f: v[:2000] for f, v in labels.items()}), (y, test_labels), k=4)
    np.testing.assert_allclose([metrics["accuracy"]["linear"]["4"][latent][f] for latent in direct["accuracy"]
                                for f in factors],
                               [direct["accuracy"][latent][f] for latent in direct["accuracy"] for f in factors])


def _history_row(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return next(csv.DictReader(f))