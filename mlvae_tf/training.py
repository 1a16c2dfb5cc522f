"""`train(config)`: data + model + callbacks + fit + save, in a run folder that resumes.

A run folder `runs/<name>/<timestamp>/` holds the resolved `config.yaml`, `history.csv` (epochs
numbered from 1, as the checkpoints), checkpoints every `train.checkpoint_every` epochs of which
the last `train.keep_checkpoints` are kept (`checkpoints/epoch_NNN.keras`), the best model by
validation loss (`best.keras`), the final `model.keras` and TensorBoard logs (`logs/`: the loss
terms and a swap grid every `train.grid_every` epochs). `BackupAndRestore` keeps its state in
`runs/<name>/.backup/` until the run ends, so `train` started again after an interruption, with
the same config, picks up the same run folder at the epoch where it stopped; a different config
is refused (`ResumeError`) unless `fresh=True` starts a new run.
"""

import contextlib
import glob
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf
import yaml

from mlvae_tf.config import ConfigError
from mlvae_tf.config import content_dims as config_content_dims
from mlvae_tf.data import grouped_dataset, largest_batch, load_splits, multi_grouped_dataset, to_pairs
from mlvae_tf.evaluation import latent_swap_grid, readable_scale, swap_grid, tile
from mlvae_tf.files import scratch_folder
from mlvae_tf.models import MLVAE, SVI, VAE, MultiLevelVAE, RegularisedVAE

__all__ = ["train", "build", "make_model", "make_strategy", "is_chief", "STRATEGIES", "DivergedError",
           "StopOnDivergence", "BestCheckpoint", "Backup", "SwapGridSummary", "Checkpoints", "EpochLogger",
           "Progress", "ResumeError", "ELBO_TERMS", "negative_elbo"]


class ResumeError(ValueError):
    """An interrupted run exists whose config differs from the one asked for."""


STRATEGIES = ("none", "mirrored", "multi_worker")

# The logged terms whose sum is the negative ELBO per group (eq. 5), whatever the model's options.
ELBO_TERMS = ("reconstruction", "kl_style", "kl_content")


def negative_elbo(logs, prefix="val_"):
    """The negative ELBO per group in `logs` (one epoch's: a `history.csv` row, or a `fit` history's
    last values), without the KL weights, options' or penalties' terms that the loss adds; None
    where a term was not logged (SVI validates at its last epoch only)."""
    values = [logs.get(f"{prefix}{term}") for term in ELBO_TERMS]
    if any(value in (None, "") for value in values):
        return None
    return sum(float(value) for value in values)


def make_strategy(name):
    """The `tf.distribute` strategy of `train.strategy`: "none" (TensorFlow's default, one
    device), "mirrored" (every local GPU, or the CPU) or "multi_worker" (the machines of
    `TF_CONFIG`; create it before any other TensorFlow work)."""
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """Whether this process writes the run: always, but under several workers only the chief (the
    `TF_CONFIG` task "chief", or worker 0 where there is none)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


class Backup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup is not deleted when training ends: `train` deletes it once
    the final model is written. With `double_checkpoint=True` it keeps the previous epoch's state
    too, which it restores when a kill truncated the latest one. With `write=False` (a worker that
    is not the chief) it restores the chief's backup and writes nothing."""

    def __init__(self, backup_dir, write=True, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.write = write

    def _save_model(self):
        if self.write:
            super()._save_model()

    def on_train_end(self, logs=None):
        pass


class DivergedError(ArithmeticError):
    """The training loss became NaN or infinite; the run's last good checkpoint is kept."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or infinite (as `TerminateOnNaN`),
    and remembers where: `epoch` (1-based) and `loss`, None while the loss stays finite."""

    def __init__(self):
        super().__init__()
        self.epoch = self.loss = None
        self._current = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.epoch is None and loss is not None and not np.isfinite(float(loss)):
            self.epoch, self.loss = self._current + 1, float(loss)
            self.model.stop_training = True


class Checkpoints(keras.callbacks.Callback):
    """Saves `folder/epoch_NNN.keras` every `every` epochs (and at the last) and keeps the last `keep`."""

    def __init__(self, folder, every=1, keep=5):
        super().__init__()
        self.folder, self.every, self.keep = folder, every, keep

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every and epoch + 1 != self.params.get("epochs"):
            return
        if not _finite_loss(logs):  # a diverged epoch is not a checkpoint
            return
        os.makedirs(self.folder, exist_ok=True)
        self.model.save(os.path.join(self.folder, f"epoch_{epoch + 1:03d}.keras"))  # atomic (MLVAE.save)
        for old in sorted(glob.glob(os.path.join(self.folder, "epoch_*.keras")))[: -self.keep]:
            os.remove(old)


def _finite_loss(logs):
    return np.isfinite(float((logs or {}).get("loss", 0.0)))


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint(save_best_only=True)` that never saves an epoch whose training loss is NaN
    or infinite (its weights are broken even where the validation loss looks finite)."""

    def on_epoch_end(self, epoch, logs=None):
        if _finite_loss(logs):
            super().on_epoch_end(epoch, logs)


class EpochLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` whose epochs are numbered from 1, as the checkpoints and Keras's progress bar."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class Progress(keras.callbacks.ProgbarLogger):
    """Keras's progress bar, whose count never passes the epoch's steps.

    With `steps_per_execution`, Keras reports the last step of an execution as if it were full, so
    an epoch of 79 batches run 10 at a time would end at "80/79" (keras-team/keras#20861).
    """

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch if self.target is None else min(batch, self.target - 1), logs)


class SwapGridSummary(keras.callbacks.Callback):
    """Writes the swap grid of fixed validation images to TensorBoard every `every` epochs: the
    content-style grid ("swap_grid"), or with several groupings one grid per latent
    ("swap_<latent>", `latent_swap_grid`)."""

    def __init__(self, log_dir, images, every):
        super().__init__()
        self.log_dir, self.images, self.every = log_dir, images, every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        latents = getattr(self.model, "groupings", None)
        if latents:
            grids = {f"swap_{latent}": latent_swap_grid(self.model, self.images, latent) for latent in latents + ("style",)}
        else:
            grids = {"swap_grid": swap_grid(self.model, self.images)[1]}
        with tf.summary.create_file_writer(os.path.join(self.log_dir, "images")).as_default():
            for name, tiles in grids.items():
                grid = np.clip(tile(tiles, scale=readable_scale(tiles), gap=2), 0.0, 1.0)  # tiles of >= 64 pixels
                tf.summary.image(name, grid[None], step=epoch + 1)


def _differences(old, new, prefix=""):
    """The dotted keys whose values differ between two configs."""
    keys = sorted(set(old) | set(new))
    found = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return found


def _run_dir(runs_dir, config, fresh=False):
    """The folder of an interrupted run of `config["name"]` to resume, or a new timestamped one.

    Raises:
        ResumeError: an interrupted run's config differs from `config` (and not `fresh`).
    """
    backup = os.path.join(runs_dir, config["name"], ".backup")
    marker = os.path.join(backup, "run_dir")
    if os.path.isdir(backup) and not os.path.exists(marker):  # a run killed while it deleted its finished backup
        shutil.rmtree(backup)
    if os.path.exists(marker):
        with open(marker) as f:
            run_dir = f.read().strip()
        if not os.path.isdir(run_dir):  # its run folder was deleted: the state is stale
            shutil.rmtree(backup)
        elif fresh:  # keep the interrupted run's state with it, resumable by hand
            shutil.move(backup, os.path.join(run_dir, ".backup-interrupted"))
        else:
            with open(os.path.join(run_dir, "config.yaml")) as f:
                differs = _differences(yaml.safe_load(f), config)
            if differs:
                raise ResumeError(f"the interrupted run in {run_dir} was made with another config ("
                                  f"{'; '.join(differs)}): run the same command as before to resume it, or add "
                                  "--fresh to start a new run (the interrupted one is kept)")
            return run_dir, backup, True
    run_dir = os.path.join(runs_dir, config["name"], time.strftime("%Y%m%d-%H%M%S"))
    while os.path.exists(run_dir):
        run_dir += "_"
    os.makedirs(run_dir)
    os.makedirs(backup, exist_ok=True)
    with open(marker, "w") as f:
        f.write(run_dir)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:  # the run's record, never rewritten
        yaml.safe_dump(config, f, sort_keys=False)
    return run_dir, backup, False


_SHARED = ("content_dim", "style_dim", "architecture", "likelihood", "hidden_units", "observation_scale",
           "kl_style_weight", "kl_content_weight")
_OWN = {"mlvae": ("aggregation", "content_samples", "cycle_weight", "critic_weight", "independence_weight",
                  "group_variance_weight"),
        "vae": (), "regularised_vae": ("penalty_weight",), "svi": ("inference_steps",)}


def make_model(settings, train, seed=None, content_dims=None):
    """The model that a config's `model` section describes (`kind`: "mlvae", "vae",
    "regularised_vae" or "svi"), for images like `train[0]`; keys of other kinds are not used.
    An SVI's tables are sized for and indexed with the training split `train` (`(images, labels)`).
    With `content_dims` (`{grouping: size}`, `mlvae_tf.config.content_dims`) it is a `MultiLevelVAE`."""
    kind = settings.get("kind", "mlvae")
    arguments = {key: settings[key] for key in _SHARED + _OWN[kind] if key in settings}
    images, labels = train
    if content_dims:
        arguments.pop("content_dim", None)
        return MultiLevelVAE(input_shape=images.shape[1:], content_dims=content_dims, seed=seed, **arguments)
    if kind == "svi":
        return SVI.for_data(images, labels, input_shape=images.shape[1:], seed=seed, **arguments)
    cls = {"mlvae": MLVAE, "vae": VAE, "regularised_vae": RegularisedVAE}[kind]
    return cls(input_shape=images.shape[1:], seed=seed, **arguments)


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
    content_dims = config_content_dims(config)
    if content_dims:  # several groupings: [N, K] ids, the first grouping's groups whole (multi_grouped_dataset)
        def pad(part):  # XLA on request: one batch size, the first grouping's largest
            first = splits[part][1][data["group_key"][0]]
            return largest_batch(first, **batches) if settings["jit_compile"] is True else None

        train_ds = multi_grouped_dataset(*splits["train"], shuffle=True, seed=data["seed"], epoch=epoch,
                                         pad_to=pad("train"), **batches)
        val_ds = multi_grouped_dataset(*splits["val"], shuffle=False, pad_to=pad("val"), **batches)
    else:
        train_ds = grouped_dataset(*splits["train"], shuffle=True, seed=data["seed"], epoch=epoch, **batches)
        val_ds = grouped_dataset(*splits["val"], shuffle=False, **batches)
        if settings["jit_compile"] is True:  # XLA compiles the pair form, padded to one batch size (one compilation)
            train_ds, val_ds = (to_pairs(ds, pad_to=largest_batch(splits[part][1], **batches))
                                for ds, part in ((train_ds, "train"), (val_ds, "val")))
    model = make_model(config["model"], splits["train"], seed=settings["seed"], content_dims=content_dims)
    optimizer = keras.optimizers.Adam(float(settings["learning_rate"]), epsilon=1e-8)  # YAML may give an int  # the paper's Adam (supplement 2)
    model.compile(optimizer=optimizer, jit_compile=settings["jit_compile"],
                  steps_per_execution=settings["steps_per_execution"])
    return model, train_ds, val_ds


def train(config, runs_dir="runs", verbose="auto", fresh=False):
    """Trains the ML-VAE that `config` (a validated `mlvae_tf.config` dict) describes.

    The data is loaded and the model built before the run folder is made, so data that cannot be
    had, or a model that cannot be built, leaves nothing. A loss that becomes NaN or infinite stops
    the run (`DivergedError`) without writing `model.keras`; its checkpoints of finite epochs stay.
    An interrupted run of the same name resumes if its config is `config`; `fresh` starts a new
    run instead (the interrupted run's folder is kept, its backup moved into it).

    `verbose` is Keras's; "auto" shows a progress bar on a terminal and one line per epoch in a
    log file or a pipe.

    `train.strategy` spreads the steps over devices (`make_strategy`), each replica given whole
    groups. Under "multi_worker" every worker runs `train` with the same config and its own
    `TF_CONFIG`; only the chief writes the run folder, the others write to temporary folders
    that are removed, and all restore the chief's backup (`runs_dir` on a file system all read).

    Returns:
        `(run_dir, history dict)`; the trained model is `run_dir/model.keras` (a worker that is not
        the chief returns its removed temporary folder).

    Raises:
        ResumeError: an interrupted run's config differs from `config` and `fresh` is False.
        DivergedError: the training loss became NaN or infinite.
        ConfigError: `data.group_key` names a label the data set lacks.
    """
    data, settings = config["data"], config["train"]
    strategy = make_strategy(settings["strategy"])  # first: a multi-worker strategy needs it
    try:
        splits = load_splits(data["name"], data["group_key"], seed=data["seed"], data_dir=data["data_dir"])
    except ValueError as error:  # a label the data set lacks: the config's, said before any work
        raise ConfigError(f"config section `data`: {error}") from None
    keras.utils.set_random_seed(settings["seed"])
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    with strategy.scope():
        model, train_ds, val_ds = build(config, splits, epoch=epoch)  # before the run folder: a failure leaves none
    chief = is_chief(strategy)
    with contextlib.ExitStack() as stack:
        if chief:
            run_dir, backup, resumed = _run_dir(runs_dir, config, fresh=fresh)
        else:  # another worker: the same steps, its files in a scratch folder; the chief's backup
            run_dir, backup = stack.enter_context(scratch_folder()), os.path.join(runs_dir, config["name"], ".backup")
            resumed = os.path.exists(os.path.join(backup, "training_metadata.json"))
        return _fit(model, train_ds, val_ds, epoch, splits, settings, run_dir, backup, resumed, chief, verbose)


def _fit(model, train_ds, val_ds, epoch, splits, settings, run_dir, backup, resumed, chief, verbose):
    """`train`'s callbacks and `fit`, writing in `run_dir`; returns `(run_dir, history dict)`."""
    logs = os.path.join(run_dir, "logs")
    divergence = StopOnDivergence()
    final = os.path.join(run_dir, "model.keras")
    restore = Backup(backup, write=chief, double_checkpoint=True)

    def finish(logs):
        if divergence.epoch is None:
            model.save(final)
        if chief:  # the backup goes once the model is saved
            keras.callbacks.BackupAndRestore.on_train_end(restore, logs)

    callbacks = [
        restore,
        # After the backup: a resumed run's first epoch is the restored one, and its batches are
        # that epoch's, not the first epoch's again.
        keras.callbacks.LambdaCallback(on_epoch_begin=lambda number, logs: epoch.assign(number)),
        divergence,
        EpochLogger(os.path.join(run_dir, "history.csv"), append=True),
        Checkpoints(os.path.join(run_dir, "checkpoints"), settings["checkpoint_every"], settings["keep_checkpoints"]),
        BestCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.TensorBoard(logs),
        SwapGridSummary(logs, splits["val"][0][:8], settings["grid_every"]),
        Progress(),  # replaces Keras's own bar (it adds one only where none is given)
        # Last: the final model is written before the backup is deleted, so a kill in between
        # resumes at the end and writes it again.
        keras.callbacks.LambdaCallback(on_train_end=finish),
    ]
    if resumed and chief:
        print(f"Resuming the interrupted run in {run_dir}")
    if verbose == "auto":  # a progress bar on a terminal; in a log file or a pipe, one line per epoch
        verbose = 1 if sys.stdout.isatty() else 2
    history = model.fit(train_ds, validation_data=val_ds, epochs=settings["epochs"], callbacks=callbacks,
                        verbose=verbose)
    if divergence.epoch is not None:
        kept = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "epoch_*.keras")))
        good = kept[-1] if kept else os.path.join(run_dir, "best.keras") if os.path.exists(
            os.path.join(run_dir, "best.keras")) else None
        raise DivergedError(f"training diverged in epoch {divergence.epoch} (loss {divergence.loss}); model.keras "
                            f"was not written; the last good checkpoint is {good or 'none (the first epoch diverged)'}. "
                            "Lower train.learning_rate and start again.")
    return run_dir, history.history
