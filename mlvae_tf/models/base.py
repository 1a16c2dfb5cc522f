"""`GroupedModel`: the fit machinery that every model trained on batches of whole groups shares.

A subclass holds its networks, its loss terms (`compute_elbo_terms`) and its inference API
(`encode`, `encode_groups`, `decode`, `decode_params`); this base holds the rest:
- the batch forms: a `tf.RaggedTensor` `[groups, (observations), *input_shape]` or a pair
  `(images [N, ...], group_ids int [N])` (-1: a padding row), unpacked to flat observations;
- the checks of what `fit` and `evaluate` get (no arrays, no ragged batches under XLA);
- the XLA policy ("auto" by default: XLA where it pays, on pairs of one size; a model's refusal) and
  the fused executions of several XLA steps (`mlvae_tf.execution`);
- thin `train_step` / `test_step`, per-group trackers of the model's `TERMS`;
- atomic saving (a temporary file renamed into place).
"""

import contextlib
import logging
import os

import keras
import numpy as np
import tensorflow as tf

from mlvae_tf import execution, validation
from mlvae_tf.data import replicas
from mlvae_tf.data.grouped import padded_pairs
from mlvae_tf.files import atomic_path

__all__ = ["GroupedModel"]

# The default path pads batches to the largest only while the padding costs less than XLA gains:
# graph mode runs the paper's MNIST step at 0.665 of the GEMM bound and XLA at 0.785
# (benchmarks/README.md), so XLA on padded batches wins while mean / largest > 0.85.
MOST_PADDING = 0.785 / 0.665


@contextlib.contextmanager
def _batch_errors():
    """A bad batch found by `validation.check_batches` while Keras reads it: one-line `ValueError`."""
    try:
        yield
    except tf.errors.InvalidArgumentError as error:
        clear = validation.batch_error(error)
        if clear is None:
            raise
        raise clear from None


class GroupedModel(keras.Model):
    """Base of the grouped models (`MLVAE`, `VAE`, `RegularisedVAE`, `SVI`).

    Subclasses set `TERMS` (the scalars `compute_elbo_terms` returns and `fit` logs, `loss`
    first), implement `compute_elbo_terms(images, group_ids, num_groups, training, noise,
    num_segments)`, and may refuse XLA by overriding `_xla_refusal`.

    Args:
        input_shape: shape of one observation, e.g. `(8, 8, 1)`.
        seed: seed of the sampling noise.
    """

    TERMS = ("loss",)

    def __init__(self, input_shape, seed=None, **kwargs):
        super().__init__(**kwargs)
        try:
            self.input_shape = tuple(validation.check_positive_int(d, "input_shape") for d in input_shape)
        except TypeError:
            raise ValueError(f"`input_shape` must be a tuple of positive integers, got {input_shape!r}.") from None
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.TERMS}

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "input_shape": list(self.input_shape),
                "seed": self.seed}

    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, written to a temporary file in the same folder and renamed into
        place, so that a crash mid-write never leaves a truncated model (checkpoints included)."""
        path = os.fspath(filepath)
        if not path.endswith(".keras") or "://" in path:
            return super().save(filepath, overwrite=overwrite, **kwargs)
        with atomic_path(path) as tmp:
            super().save(tmp, overwrite=True, **kwargs)
            if not overwrite and os.path.exists(path):
                raise FileExistsError(f"{path} exists and `overwrite` is False.")

    def compile(self, optimizer="adam", jit_compile="auto", steps_per_execution=None, **kwargs):
        """`keras.Model.compile`, by default on the fastest path measured for the model and device.

        `jit_compile="auto"` (the default): `fit` and `evaluate` run the step under XLA, each
        execution's `steps_per_execution` (default 10) steps as one XLA program, wherever that is
        faster (`_xla_pays`: on a CPU the "mlp" and "spatial" networks on observations of 784 values
        or more, not the 8x8 digits, `conv64` nor "equivariant", benchmarks/README.md; every model on
        a GPU). The ragged batches of `grouped_dataset` are converted to pairs padded to its largest
        batch, so that XLA compiles once. Where XLA cannot apply (the mixture, SVI, several
        replicas, ragged batches of unknown largest size, pairs of varying size), the steps run in
        graph mode, and the model says why once, in one line (the `mlvae_tf` logger).

        `jit_compile=True` takes batches as `(images, group_ids)` pairs of one size
        (`mlvae_tf.data.to_pairs(ds, pad_to=...)`) and refuses ragged batches, which XLA would
        compile anew for every batch shape. `jit_compile=False` is graph mode (steps_per_execution 1
        unless given).
        """
        refusal = self._xla_refusal()
        if jit_compile is True and refusal:
            raise ValueError(f"`jit_compile=True` {refusal}")
        if steps_per_execution is None:
            steps_per_execution = 10 if jit_compile == "auto" else 1
        super().compile(optimizer=optimizer, jit_compile=False if jit_compile == "auto" else jit_compile,
                        steps_per_execution=steps_per_execution, **kwargs)
        self._auto_jit = self._xla_pays() if jit_compile == "auto" else None  # decided per dataset by `fit`
        self._said = set()

    def _xla_pays(self):
        """Whether XLA makes this model's step faster here. Measured on the CPU (benchmarks/README.md):
        the paper's MNIST network, 784 values per observation, yes (0.785 of the GEMM bound against
        0.665 in graph mode); the same network on the 8x8 digits, 64 values, no (0.92x); the conv64
        network, no (21 observations per second against 40); the "spatial" networks on the 32x32x3
        grouped shapes, yes (40 ms a step against 80-86); the "equivariant" ones there, no (101
        observations per second in the fused ten-step XLA program, 1,906 with one step per XLA call,
        1,959 in graph mode). On a GPU assumed for all (not measured yet: benchmarks/gpu.py)."""
        if self._xla_refusal():
            return False
        if tf.config.list_logical_devices("GPU"):
            return True
        return getattr(self, "architecture", "mlp") in ("mlp", "spatial") and int(np.prod(self.input_shape)) >= 784

    def _say(self, message):
        """`message` on the `mlvae_tf` logger, once per compiled model."""
        if message not in self._said:
            self._said.add(message)
            logging.getLogger("mlvae_tf").warning("mlvae_tf: %s", message)

    def make_train_function(self, force=False):
        """Keras's train function; under `jit_compile=True` with `steps_per_execution` > 1, each
        execution's steps run as one XLA program (`mlvae_tf.execution`) on batches of one shape."""
        if self.train_function is None or force:
            super().make_train_function(force=True)
            self.train_function = self._fused(self.train_step, self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        """Keras's test function, its executions fused as `make_train_function`'s."""
        if self.test_function is None or force:
            super().make_test_function(force=True)
            self.test_function = self._fused(self.test_step, self.test_function)
        return self.test_function

    def compile_from_config(self, config):
        """Restores the compiled state (optimizer) saved in a `.keras` file."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, *args, shuffle=False, **kwargs):
        """`keras.Model.fit` on a `tf.data.Dataset` of batches of whole groups.

        Arrays are refused: Keras would cut them into batches that split groups. Use
        `mlvae_tf.data.grouped_dataset`, or a dataset of `(images, group_ids)` pairs. Under a
        `tf.distribute` strategy of several replicas, each replica gets whole groups of every
        batch (`mlvae_tf.data.distribute`), and the loss is the global batch's average group ELBO.
        """
        datasets = (("x", x), ("validation_data", kwargs.get("validation_data")))
        x, validation_data = map(self._distributed, self._check_batches(datasets))
        if validation_data is not None:
            kwargs["validation_data"] = validation_data
        with _batch_errors():
            return super().fit(x, *args, shuffle=shuffle, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate` on a `tf.data.Dataset` of batches of whole groups (see `fit`)."""
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's validation: checked by fit
            (x,) = map(self._distributed, self._check_batches([("x", x)]))
        with _batch_errors():
            return super().evaluate(x, *args, **kwargs)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The model's loss terms on flat observations: a dict of the scalars in `TERMS`."""
        raise NotImplementedError

    def train_step(self, data):
        images, group_ids, num_groups, segments = self._unpack(data)
        with tf.GradientTape() as tape:
            terms = self.compute_elbo_terms(images, group_ids, tf.maximum(num_groups, 1), training=True,
                                            num_segments=segments)
            loss = self.optimizer.scale_loss(self._replica_loss(terms["loss"], num_groups))
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_trackers(terms, num_groups)

    def test_step(self, data):
        images, group_ids, num_groups, segments = self._unpack(data)
        terms = self.compute_elbo_terms(images, group_ids, tf.maximum(num_groups, 1), training=False,
                                        num_segments=segments)
        return self._update_trackers(terms, num_groups)

    def predict_step(self, data):
        return self._encode(self._unpack(data)[0])  # the per-observation posteriors, as `encode`

    # Helpers.

    def _replica_loss(self, loss, num_groups):
        """`loss` (the average over the batch's `num_groups` groups) plus the layers' losses; under R
        replicas, this replica's share of the global batch's: `loss` times its groups over the
        global batch's (an all-reduce) and the layers' losses over R, as the optimizer sums the
        replicas' gradients. A replica with no group adds 0."""
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return loss + sum(self.losses)
        groups = tf.cast(num_groups, loss.dtype)
        share = groups / context.all_reduce(tf.distribute.ReduceOp.SUM, groups)
        return loss * share + sum(self.losses) / context.num_replicas_in_sync

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Builds the optimizer under the model's strategy. The models are built when constructed;
        Keras's version would first average a batch across replicas, which fails for ragged
        batches and for replicas of different batch sizes."""
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

    def _next_seed(self):
        """A step's noise seed, int32 `[2]`: the seed generator's next, folded under several
        replicas with the replica's id, so that replicas do not draw the same noise."""
        seed = tf.cast(self.seed_generator.next(), tf.int32)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(seed, context.replica_id_in_sync_group)
        return seed

    def _distributed(self, batches):
        """`batches`, or under a strategy of several replicas, a distributed dataset whose replicas
        each get whole groups of every batch (`mlvae_tf.data.distribute`)."""
        strategy = self.distribute_strategy
        if isinstance(batches, tf.data.Dataset) and strategy.num_replicas_in_sync > 1:
            return replicas.distribute(batches, strategy)
        return batches

    def _xla_refusal(self):
        """Why XLA cannot compile this model's step ("needs ..."), or None."""
        return None

    def _groupings_in_batch(self):
        """None: a batch's group ids are a vector `[N]`; K: an `[N, K]` matrix, K groupings."""
        return None

    @staticmethod
    def _first_grouping(group_ids):
        """The ids `[N]` of a batch's (first) grouping: `group_ids` `[N]`, or column 0 of `[N, K]`;
        it decides the padding rows (-1) and the number of groups the loss is divided by."""
        return group_ids if group_ids.shape.rank == 1 else group_ids[:, 0]

    def _fused(self, step_function, keras_function):
        """`keras_function`, or under XLA with several steps per execution, the fused executions."""
        if self.jit_compile is True and self.steps_per_execution > 1 and not self.run_eagerly:
            return execution.fused_function(self, step_function, fallback=keras_function)
        return keras_function

    def _observed(self, rows, observed):
        """`observed` (bool `[N]`), or every one of `rows` observed when it is None."""
        return tf.ones(tf.shape(rows)[:1], tf.bool) if observed is None else tf.convert_to_tensor(observed)

    def _unpack(self, data):
        """A batch of groups -> `(images [N, *input_shape], group_ids int32 [N], num_groups, num_segments)`.

        For pairs, `num_segments` is the batch size, never a value of the data: XLA needs the
        segment count at compile time and would otherwise compile anew for every batch."""
        if isinstance(data, tf.RaggedTensor):
            if data.ragged_rank != 1:
                raise ValueError(
                    "A batch of groups must be a RaggedTensor [groups, (observations), *input_shape] with one "
                    f"ragged dimension, got ragged_rank {data.ragged_rank}."
                )
            num_groups = tf.cast(data.nrows(), tf.int32)
            return data.flat_values, tf.cast(data.value_rowids(), tf.int32), num_groups, num_groups
        if isinstance(data, (tuple, list)) and len(data) == 2:
            images, group_ids = data
            group_ids = tf.cast(group_ids, tf.int32)
            size = tf.shape(group_ids)[0]
            check = tf.debugging.Assert(  # not under XLA, which compiles assertions away
                tf.reduce_all((group_ids >= -1) & (group_ids < size)),
                ["A pair batch (images, group_ids) needs group ids in [0, batch size), or -1 for padding: the "
                 "ids of the batch's groups, not labels. Build batches with mlvae_tf.data.grouped_dataset (and "
                 "to_pairs)."])
            with tf.control_dependencies([check]):
                group_ids = tf.identity(group_ids)
            return images, group_ids, tf.reduce_max(self._first_grouping(group_ids)) + 1, size
        raise ValueError(
            "A batch of groups must be a tf.RaggedTensor [groups, (observations), *input_shape] or a pair "
            f"(images, group_ids); got {type(data).__name__}."
        )

    def _check_batches(self, datasets):
        """Checks `(name, value)` pairs of what `fit` or `evaluate` got; returns the values, each
        dataset's batches checked as they are read (`validation.check_batches`).

        Refuses arrays (Keras would split groups), batches of another form, dtype or image shape,
        and, under `jit_compile=True`, ragged batches:
        XLA compiles the step for every batch shape, and batches of whole groups vary (about 15x
        slower on the digits, `python -m benchmarks.ragged_xla`). Under `jit_compile="auto"`,
        XLA is on where it pays (`_xla_pays`) for batches of one size: `grouped_dataset`'s
        batches become pairs padded to its largest batch; others run in graph mode. Under
        several replicas, graph mode with one step per call.
        """
        replicas = self.distribute_strategy.num_replicas_in_sync
        auto = self.compiled and self._auto_jit is not None and replicas == 1
        ragged, checked, varying = [], [], []
        for name, batches in datasets:
            if isinstance(batches, (np.ndarray, tf.Tensor, tuple, list, dict)):
                raise ValueError(
                    f"`{name}` must be a tf.data.Dataset of batches of whole groups (see "
                    "mlvae_tf.data.grouped_dataset), not arrays: Keras would split groups across batches."
                )
            if isinstance(batches, tf.data.Dataset):
                largest = getattr(batches, "_largest_batch", None)  # set by grouped_dataset
                mean = getattr(batches, "_mean_batch", None)
                batches = validation.check_batches(batches, self.input_shape, name, self._groupings_in_batch())
                if auto and self._auto_jit and not execution.static(batches.element_spec):
                    batches = self._padded_for_xla(name, batches, largest, mean)
                ragged += [name] if isinstance(batches.element_spec, tf.RaggedTensorSpec) else []
                varying += [] if execution.static(batches.element_spec) else [name]
            checked.append(batches)
        if not self.compiled:
            return checked
        if replicas > 1:
            if self.jit_compile or self._auto_jit:
                self._say(f"XLA is off under a tf.distribute strategy of {replicas} replicas: Keras compiles the "
                          "replicas' steps as one program, which cannot reach the other devices' variables. The "
                          "steps run in graph mode.")
            if self.steps_per_execution > 1:
                self._say(f"steps_per_execution is 1 under a tf.distribute strategy of {replicas} replicas: Keras's "
                          "loop of several steps fails on TensorFlow's distributed input.")
            if self.jit_compile or self.steps_per_execution > 1:
                self.jit_compile, self.steps_per_execution = False, 1
                self.train_function = self.test_function = None
            return checked
        if auto:
            refusal = self._xla_refusal()
            if refusal:
                self._say(f"the steps run without XLA, which {refusal}")
            jit_compile = self._auto_jit and not varying
            if jit_compile != self.jit_compile:
                self.jit_compile = jit_compile
                self.train_function = self.test_function = None  # rebuilt with the new setting
        elif ragged and self.jit_compile:
            raise ValueError(
                f"`{ragged[0]}` holds ragged batches, but the model was compiled with `jit_compile=True`: XLA "
                "would compile the step anew for every batch shape. Feed `(images, group_ids)` pairs of one "
                "size, `mlvae_tf.data.to_pairs(ds, pad_to=mlvae_tf.data.largest_batch(labels, groups_per_batch, "
                "max_group_size))`, or compile with `jit_compile=False`."
            )
        return checked

    def _padded_for_xla(self, name, batches, largest, mean):
        """The default path's batches of one size: `batches` padded to `largest` observations where
        that costs less than XLA gains (`MOST_PADDING`); else `batches`, and the model says why."""
        if largest and largest <= MOST_PADDING * mean:
            return padded_pairs(batches, largest)
        if largest:
            self._say(f"`{name}` runs without XLA: padding its batches to its largest ({largest} observations, "
                      f"{mean:.0f} on average) would cost more than XLA gains. Cap the groups with max_group_size "
                      "to run it under XLA.")
        else:
            self._say(f"`{name}` runs without XLA: its batches have no one size, and its largest is unknown. Pass "
                      "grouped_dataset's output as it is, or pairs padded to one size "
                      "(mlvae_tf.data.to_pairs(ds, pad_to=mlvae_tf.data.largest_batch(...))).")
        return batches

    def _update_trackers(self, terms, num_groups):
        """Adds a step's terms to the trackers; returns their per-group averages so far, over the
        global batches under several replicas (the same on every replica)."""
        weight = tf.cast(num_groups, tf.float32)  # epoch averages are per group
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name], sample_weight=weight)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            sums = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack(  # [terms, 2]
                [tf.stack([tf.convert_to_tensor(tracker.total), tf.convert_to_tensor(tracker.count)])
                 for tracker in self.trackers.values()]))
            logs = {name: tf.math.divide_no_nan(sums[i, 0], sums[i, 1]) for i, name in enumerate(self.trackers)}
            strategy = tf.distribute.get_strategy()
            if getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)():
                # Keras averages the replicas' logs along an axis 0 that scalars lack under several
                # workers (tensorflow/tensorflow#72388): give them one.
                logs = {name: value[None] for name, value in logs.items()}
            return logs
        return {name: tracker.result() for name, tracker in self.trackers.items()}
