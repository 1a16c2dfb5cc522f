"""End to end on the bundled digits: one model trained per session (tests/conftest.py)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

import mlvae_tf
from mlvae_tf.config import load_config
from mlvae_tf.training import train
from tests.conftest import TRAIN_EPOCHS


def test_history_has_the_loss_terms_and_validation(trained):
    _, history, _ = trained
    for name in ("loss", "reconstruction", "kl_style", "kl_content"):
        assert len(history[name]) == TRAIN_EPOCHS and len(history["val_" + name]) == TRAIN_EPOCHS
    total = np.array(history["reconstruction"]) + np.array(history["kl_style"]) + np.array(history["kl_content"])
    np.testing.assert_allclose(total, history["loss"], rtol=1e-4)


def test_training_lowers_the_validation_loss_clearly(trained):
    _, history, before = trained
    after = history["val_loss"][-1]
    print(f"validation loss per group: {before:.1f} before training, {after:.1f} after {TRAIN_EPOCHS} epochs")
    assert after < 0.75 * before


def test_content_means_classify_digits_better_than_style_means(trained, digits_split):
    model = trained[0]
    accuracy = {}
    for name in ("content_mean", "style_mean"):
        features = {part: model.encode(digits_split[part][0])[name].numpy() for part in ("train", "test")}
        clf = LogisticRegression(max_iter=2000).fit(features["train"], digits_split["train"][1])
        accuracy[name] = clf.score(features["test"], digits_split["test"][1])
    print(f"test accuracy of a logistic regression on single-image means: {accuracy}")
    assert accuracy["content_mean"] > 0.85
    assert accuracy["content_mean"] > accuracy["style_mean"] + 0.3


def test_save_and_load_round_trip_gives_identical_encodings(trained, digits_split, tmp_path):
    model = trained[0]
    x, labels = digits_split["test"]
    path = tmp_path / "m.keras"
    model.save(path)
    same = keras.models.load_model(path)
    assert isinstance(same, mlvae_tf.MLVAE) and same.get_config() == model.get_config()
    for key, value in model.encode(x).items():
        np.testing.assert_array_equal(same.encode(x)[key], value)
    grp, same_grp = model.encode_groups(x, labels), same.encode_groups(x, labels)
    for key, value in grp.items():
        np.testing.assert_array_equal(same_grp[key], value)
    content, style = grp["content_mean"].numpy()[labels], grp["style_mean"]
    np.testing.assert_array_equal(same.decode(content, style), model.decode(content, style))
    assert int(same.optimizer.iterations) == int(model.optimizer.iterations) > 0


def test_save_is_atomic_a_failed_write_keeps_the_old_file(trained, tmp_path, monkeypatch):
    model = trained[0]
    path = tmp_path / "m.keras"
    model.save(path)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):  # writes part of a file where it was asked to, then fails
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):  # the error reaches the caller
        model.save(path)
    assert path.read_bytes() == before  # the old model is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]  # no temporary left behind


@pytest.mark.slow
def test_train_on_the_xla_pair_path_with_several_steps_per_execution(tmp_path):
    # Groups of up to 10 digits make batches of varying size: padded, the step compiles once.
    config = load_config(overrides=["train.epochs=2", "train.jit_compile=true", "train.steps_per_execution=3",
                                    "model.hidden_units=32", "train.grid_every=2"])
    run_dir, history = train(config, runs_dir=str(tmp_path), verbose=0)
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert np.all(np.isfinite(history["val_loss"]))
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    assert model.jit_compile is True and model.steps_per_execution == 3  # the fast path is kept on reload


def test_checkpoints_every_n_epochs_keep_the_last_few(tmp_path):
    from mlvae_tf.training import Checkpoints
    from tests.conftest import make_tiny_model

    model = make_tiny_model()
    model.compile(optimizer="adam")
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 1)).astype(np.float32)
    ds = tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, [2, 4]))
    model.fit(ds, epochs=7, verbose=0, callbacks=[Checkpoints(str(tmp_path), every=2, keep=2)])
    assert sorted(os.listdir(tmp_path)) == ["epoch_006.keras", "epoch_007.keras"]  # the last epoch is always saved
    restored = keras.models.load_model(tmp_path / "epoch_007.keras")
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), model.get_weights()))


def test_progress_bar_never_counts_past_the_epoch_with_several_steps_per_execution():
    from mlvae_tf.training import Progress
    from tests.conftest import make_tiny_model

    def counts(logger_class):
        class Recorder(logger_class):
            def on_train_batch_end(self, batch, logs=None):
                super().on_train_batch_end(batch, logs)
                seen.append(self.seen)

        seen = []
        model.fit(ds, epochs=1, verbose=0, callbacks=[Recorder()])
        return seen

    model = make_tiny_model()
    model.compile(optimizer="adam", steps_per_execution=2)
    x = np.random.default_rng(0).uniform(size=(6, 8, 8, 1)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_row_lengths(x, [2, 1, 3])).map(
        lambda group: tf.RaggedTensor.from_tensor(group[None]))  # 3 batches: the last execution runs 1 step
    assert counts(Progress) == [2, 3]
    assert counts(keras.callbacks.ProgbarLogger) == [2, 4]  # Keras's own bar: the defect that Progress mends


def test_data_that_cannot_be_had_leaves_no_run_folder(tmp_path, monkeypatch):
    import mlvae_tf.training

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(mlvae_tf.training, "load_splits", offline)
    with pytest.raises(OSError, match="no network"):
        train(load_config(), runs_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # no run folder and no backup that a next run would "resume"


@pytest.mark.slow
def test_a_diverging_run_stops_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import mlvae_tf.training
    from mlvae_tf.training import DivergedError

    def poison(self, epoch, logs=None):  # the weights turn NaN as epoch 2 begins
        if epoch == 1:
            for weight in self.model.trainable_weights:
                weight.assign(weight * np.nan)

    monkeypatch.setattr(mlvae_tf.training.EpochLogger, "on_epoch_begin", poison)
    config = load_config(overrides=["train.epochs=3", "model.hidden_units=16", "train.steps_per_execution=1"])
    with pytest.raises(DivergedError, match=r"diverged in epoch 2 \(loss nan\).*checkpoints/epoch_001.keras"):
        train(config, runs_dir=str(tmp_path), verbose=0)
    (run_dir,) = [p for p in (tmp_path / "digits").iterdir()]
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["epoch_001.keras"] and not (run_dir / "model.keras").exists()
    kept = keras.models.load_model(run_dir / "checkpoints" / "epoch_001.keras")
    assert all(np.all(np.isfinite(w)) for w in kept.get_weights())
    best = keras.models.load_model(run_dir / "best.keras")  # epoch 1's: the diverged epoch never counts as best
    assert all(np.array_equal(a, b) for a, b in zip(best.get_weights(), kept.get_weights()))
    assert not (tmp_path / "digits" / ".backup").exists()  # the same command starts a new run, not a NaN resume


@pytest.mark.slow
def test_the_same_seed_gives_bit_identical_weights_on_the_ragged_and_the_xla_pair_paths():
    x, labels = mlvae_tf.data.digits_splits(seed=0)["train"]
    x, labels = x[:300], labels[:300]

    def weights(jit):
        keras.utils.set_random_seed(0)
        model = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=5, style_dim=3, hidden_units=32, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit, steps_per_execution=2 if jit else 1)
        ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=4, max_group_size=10, seed=0)
        if jit:
            ds = mlvae_tf.data.to_pairs(ds, pad_to=mlvae_tf.data.largest_batch(labels, 4, 10))
        model.fit(ds, epochs=2, verbose=0)
        return model.get_weights()

    for jit in (False, True):
        first, again = weights(jit), weights(jit)
        assert all(np.array_equal(a, b) for a, b in zip(first, again)), f"jit_compile={jit}"


def test_progress_off_a_terminal_is_one_line_per_step_with_running_means(capsys):
    from mlvae_tf.progress import Lines, progress_bar

    bar = progress_bar(3, unit_name="trial")  # pytest's captured stdout is not a terminal
    assert isinstance(bar, Lines)
    bar.update(1, [("content", 0.5)])
    bar.update(3, [("content", 0.8)])  # two steps at 0.8: (0.5 + 2 * 0.8) / 3
    bar.add(0)
    out = capsys.readouterr().out
    assert out == "trial 1/3 - content: 0.5\ntrial 3/3 - content: 0.7\ntrial 3/3 - content: 0.7\n"
