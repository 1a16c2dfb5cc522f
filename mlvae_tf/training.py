"""`train(config)`: data + model + callbacks + fit + save, in a run folder that resumes.

A run folder `runs/<name>/<timestamp>/` holds the resolved `config.yaml`, `history.csv`, a
checkpoint per epoch (`checkpoints/epoch_NNN.keras`), the best model by validation loss
(`best.keras`), the final `model.keras` and TensorBoard logs (`logs/`: the loss terms and a swap
grid every `train.grid_every` epochs). `BackupAndRestore` keeps its state in
`runs/<name>/.backup/` until the run ends, so `train` started again after an interruption picks
up the same run folder at the epoch where it stopped.
"""

import os
import time

import keras
import numpy as np
import tensorflow as tf
import yaml

from mlvae_tf.data import grouped_dataset, largest_batch, load_splits, to_pairs
from mlvae_tf.evaluation import swap_grid
from mlvae_tf.model import MLVAE

__all__ = ["train", "build", "SwapGridSummary"]


class SwapGridSummary(keras.callbacks.Callback):
    """Writes the swap grid of fixed validation images to TensorBoard every `every` epochs."""

    def __init__(self, log_dir, images, every):
        super().__init__()
        self.log_dir, self.images, self.every = log_dir, images, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        grid = np.clip(swap_grid(self.model, self.images)[0], 0.0, 1.0)
        with tf.summary.create_file_writer(os.path.join(self.log_dir, "images")).as_default():
            tf.summary.image("swap_grid", grid[None], step=epoch + 1)


def _run_dir(runs_dir, name):
    """The folder of an interrupted run of `name` to resume, or a new timestamped one."""
    backup = os.path.join(runs_dir, name, ".backup")
    marker = os.path.join(backup, "run_dir")
    if os.path.exists(marker):
        with open(marker) as f:
            run_dir = f.read().strip()
        if os.path.isdir(run_dir):
            return run_dir, backup, True
    run_dir = os.path.join(runs_dir, name, time.strftime("%Y%m%d-%H%M%S"))
    while os.path.exists(run_dir):
        run_dir += "_"
    os.makedirs(run_dir)
    os.makedirs(backup, exist_ok=True)
    with open(marker, "w") as f:
        f.write(run_dir)
    return run_dir, backup, False


def build(config, splits, epoch=None):
    """The compiled model and the train / validation pipelines that `config` describes.

    Args:
        config: a validated `mlvae_tf.config` dict.
        splits: `{"train" | "val": (images, labels), ...}` (see `mlvae_tf.data.load_splits`).
        epoch: optional int `tf.Variable`, the epoch whose shuffle the training batches follow
            (see `mlvae_tf.data.grouped_dataset`).

    Returns:
        `(model, train_ds, val_ds)`.
    """
    data, settings = config["data"], config["train"]
    batches = dict(groups_per_batch=data["groups_per_batch"], max_group_size=data["max_group_size"])
    train_ds = grouped_dataset(*splits["train"], shuffle=True, seed=data["seed"], epoch=epoch, **batches)
    val_ds = grouped_dataset(*splits["val"], shuffle=False, **batches)
    if settings["jit_compile"]:  # XLA compiles the pair form, padded to one batch size (one compilation)
        train_ds, val_ds = (to_pairs(ds, pad_to=largest_batch(splits[part][1], **batches))
                            for ds, part in ((train_ds, "train"), (val_ds, "val")))
    model = MLVAE(input_shape=splits["train"][0].shape[1:], seed=settings["seed"], **config["model"])
    optimizer = keras.optimizers.Adam(settings["learning_rate"], epsilon=1e-8)  # the paper's Adam (supplement 2)
    model.compile(optimizer=optimizer, jit_compile=settings["jit_compile"],
                  steps_per_execution=settings["steps_per_execution"])
    return model, train_ds, val_ds


def train(config, runs_dir="runs", verbose="auto"):
    """Trains the ML-VAE that `config` (a validated `mlvae_tf.config` dict) describes.

    Returns:
        `(run_dir, history dict)`; the trained model is `run_dir/model.keras`.
    """
    run_dir, backup, resumed = _run_dir(runs_dir, config["name"])
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    data, settings = config["data"], config["train"]
    keras.utils.set_random_seed(settings["seed"])
    splits = load_splits(data["name"], data["group_key"], seed=data["seed"])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    model, train_ds, val_ds = build(config, splits, epoch=epoch)
    logs = os.path.join(run_dir, "logs")
    callbacks = [
        keras.callbacks.BackupAndRestore(backup),
        # After BackupAndRestore: a resumed run's first epoch is the restored one, and its batches
        # are that epoch's, not the first epoch's again.
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda number, logs: epoch.assign(number)),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "history.csv"), append=True),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "checkpoints", "epoch_{epoch:03d}.keras")),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.TensorBoard(logs),
        SwapGridSummary(logs, splits["val"][0][:8], settings["grid_every"]),
    ]
    if resumed:
        print(f"Resuming the interrupted run in {run_dir}")
    history = model.fit(train_ds, validation_data=val_ds, epochs=settings["epochs"], callbacks=callbacks,
                        verbose=verbose)
    model.save(os.path.join(run_dir, "model.keras"))
    return run_dir, history.history
