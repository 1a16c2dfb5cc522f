"""The Multi-Level VAE as a Keras model (paper, section 3 and Algorithm 1)."""

import os

import keras
import numpy as np
import tensorflow as tf

from mlvae_tf import distributions, execution, grouping, losses, networks, validation

__all__ = ["MLVAE", "TERMS"]

TERMS = ("loss", "reconstruction", "kl_style", "kl_content")


@keras.saving.register_keras_serializable(package="mlvae_tf")
class MLVAE(keras.Model):
    """ML-VAE: a content latent shared by each group and a style latent per observation.

    `fit` takes batches of whole groups, either a `tf.RaggedTensor` `[groups, (observations),
    *input_shape]` (what `mlvae_tf.data.grouped_dataset` yields) or a pair `(images [N,
    *input_shape], group_ids int [N])`, and minimises the negative average group ELBO (eq. 5):
    one content sample per observation from its group's posterior (Algorithm 1, step 9), one
    style sample per observation, the content KL once per group, divided by the number of groups.

    Args:
        input_shape: shape of one observation, e.g. `(8, 8, 1)`.
        content_dim: size of the content latent (shared by a group).
        style_dim: size of the style latent (per observation).
        architecture: "mlp" or "conv64" (see `mlvae_tf.networks`).
        likelihood: "bernoulli", "normal" (learned per-pixel log-variance) or "normal_fixed"
            (scale `observation_scale`).
        aggregation: "product" (product of Normals, eq. 7) or "mixture" (mixture of Normals,
            supplement section 1, KL estimated with |G| samples).
        hidden_units: width of the "mlp" hidden layers.
        observation_scale: standard deviation of the "normal_fixed" likelihood.
        kl_style_weight, kl_content_weight: weights of the KL terms (1 is the ELBO).
        seed: seed of the sampling noise.

    Example:
        >>> model = MLVAE(input_shape=(8, 8, 1), content_dim=5, style_dim=3)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=32), epochs=1)
    """

    def __init__(
        self,
        input_shape,
        content_dim=10,
        style_dim=10,
        architecture="mlp",
        likelihood="bernoulli",
        aggregation="product",
        hidden_units=500,
        observation_scale=1.0,
        kl_style_weight=1.0,
        kl_content_weight=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if likelihood not in distributions.LIKELIHOODS:
            raise ValueError(f"`likelihood` must be one of {distributions.LIKELIHOODS}, got {likelihood!r}.")
        if aggregation not in distributions.AGGREGATIONS:
            raise ValueError(f"`aggregation` must be one of {distributions.AGGREGATIONS}, got {aggregation!r}.")
        if not observation_scale > 0:
            raise ValueError(f"`observation_scale` must be > 0, got {observation_scale!r}.")
        try:
            self.input_shape = tuple(validation.check_positive_int(d, "input_shape") for d in input_shape)
        except TypeError:
            raise ValueError(f"`input_shape` must be a tuple of positive integers, got {input_shape!r}.") from None
        self.content_dim = validation.check_positive_int(content_dim, "content_dim")
        self.style_dim = validation.check_positive_int(style_dim, "style_dim")
        self.hidden_units = validation.check_positive_int(hidden_units, "hidden_units")
        self.architecture = architecture
        self.likelihood = likelihood
        self.aggregation = aggregation
        self.observation_scale = float(observation_scale)
        self.kl_style_weight = float(kl_style_weight)
        self.kl_content_weight = float(kl_content_weight)
        self.seed = seed
        self.encoder = networks.build_encoder(architecture, self.input_shape, content_dim, style_dim, hidden_units)
        self.decoder = networks.build_decoder(
            architecture, self.input_shape, content_dim, style_dim, likelihood, hidden_units
        )
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in TERMS}
        self.built = True

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_shape": list(self.input_shape),
            "content_dim": self.content_dim,
            "style_dim": self.style_dim,
            "architecture": self.architecture,
            "likelihood": self.likelihood,
            "aggregation": self.aggregation,
            "hidden_units": self.hidden_units,
            "observation_scale": self.observation_scale,
            "kl_style_weight": self.kl_style_weight,
            "kl_content_weight": self.kl_content_weight,
            "seed": self.seed,
        }

    def save(self, filepath, overwrite=True, **kwargs):
        """`keras.Model.save`, written to a temporary file in the same folder and renamed into
        place, so that a crash mid-write never leaves a truncated model (checkpoints included)."""
        path = os.fspath(filepath)
        if not path.endswith(".keras") or "://" in path:
            return super().save(filepath, overwrite=overwrite, **kwargs)
        folder, base = os.path.split(os.path.abspath(path))
        tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}.keras")
        try:
            super().save(tmp, overwrite=True, **kwargs)
            if not overwrite and os.path.exists(path):
                raise FileExistsError(f"{path} exists and `overwrite` is False.")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def compile(self, optimizer="adam", jit_compile=False, **kwargs):
        """`keras.Model.compile` with XLA off by default.

        `jit_compile=True` takes batches as `(images, group_ids)` pairs of one size
        (`mlvae_tf.data.to_pairs(ds, pad_to=...)`): XLA then compiles the step once, and it runs
        faster, more so with `steps_per_execution=10` (benchmarks/README.md). `fit` refuses
        ragged batches under XLA, which would compile anew for every batch shape. With
        `jit_compile="auto"` (XLA where Keras finds a GPU), ragged batches and the mixture run
        without XLA instead.
        """
        if jit_compile is True and self.aggregation == "mixture":
            raise ValueError(
                "`jit_compile=True` needs aggregation='product': the mixture's KL uses ragged ops that XLA "
                "cannot compile."
            )
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        if jit_compile == "auto" and self.aggregation == "mixture":
            self.jit_compile = False
        self._auto_jit = self.jit_compile if jit_compile == "auto" else None  # XLA for pairs only

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
        `mlvae_tf.data.grouped_dataset`, or a dataset of `(images, group_ids)` pairs.
        """
        datasets = (("x", x), ("validation_data", kwargs.get("validation_data")))
        self._check_batches(datasets)
        return super().fit(x, *args, shuffle=shuffle, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        """`keras.Model.evaluate` on a `tf.data.Dataset` of batches of whole groups (see `fit`)."""
        if not kwargs.get("_use_cached_eval_dataset"):  # fit's validation: checked by fit
            self._check_batches([("x", x)])
        return super().evaluate(x, *args, **kwargs)

    @property
    def metrics(self):
        return list(self.trackers.values())

    # Public inference API: everything export and evaluation need.

    def call(self, images, training=False):
        """The per-observation posterior parameters; see `encode`."""
        return self._encode(images, training=training)

    def encode(self, images):
        """Per-observation posteriors q(s_i | x_i) and q(c | x_i).

        Args:
            images: float `[N, *input_shape]`.

        Returns:
            dict of `[N, d]` float32 tensors: `style_mean`, `style_log_var`, `content_mean`,
            `content_log_var` (log-variances clamped as the model uses them).
        """
        return self._encode(validation.check_images(images, self.input_shape))

    def encode_groups(self, images, group_ids, num_groups=None):
        """Group posteriors q(c_g | X_g) (accumulated evidence) and per-observation styles.

        Args:
            images: float `[N, *input_shape]`.
            group_ids: int `[N]` in `[0, num_groups)`, every group with at least one image.
            num_groups: number of groups `G`; `max(group_ids) + 1` when omitted.

        Returns:
            dict: `content_mean`, `content_log_var` `[G, content_dim]` (the product of Normals of
            each group, or for `aggregation="mixture"` the moment-matched Normal of the mixture);
            `style_mean`, `style_log_var` `[N, style_dim]`.
        """
        images = validation.check_images(images, self.input_shape)
        group_ids, num_groups = validation.check_group_ids(group_ids, images.shape[0], num_groups)
        encoded = self._encode(images)
        aggregate = (
            grouping.product_of_normals if self.aggregation == "product" else grouping.mixture_of_normals_moments
        )
        content_mean, content_log_var = aggregate(
            encoded["content_mean"], encoded["content_log_var"], group_ids, num_groups
        )
        return {
            "content_mean": content_mean,
            "content_log_var": content_log_var,
            "style_mean": encoded["style_mean"],
            "style_log_var": encoded["style_log_var"],
        }

    def decode(self, content, style):
        """Mean of p(x | c, s).

        Args:
            content: `[N, content_dim]`; style: `[N, style_dim]`.

        Returns:
            float32 `[N, *input_shape]`.
        """
        return self.decode_params(content, style)["mean"]

    def decode_params(self, content, style):
        """Parameters of p(x | c, s): `mean` `[N, *input_shape]`, plus `log_var` for the "normal"
        likelihood (its learned per-pixel log-variance)."""
        content = validation.check_latent(content, self.content_dim, "content")
        style = validation.check_latent(style, self.style_dim, "style")
        if content.shape[0] is not None and style.shape[0] is not None and content.shape[0] != style.shape[0]:
            raise ValueError(f"`content` has {content.shape[0]} rows but `style` has {style.shape[0]}.")
        params = {name: tf.cast(value, tf.float32) for name, value in self._decode(content, style).items()}
        if self.likelihood == "bernoulli":
            return {"mean": tf.sigmoid(params["logits"])}
        if self.likelihood == "normal":
            return {"mean": params["mean"], "log_var": grouping.clamp_log_var(params["log_var"])}
        return {"mean": params["mean"]}

    # Training.

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The terms of eq. 5 on flat observations (see `mlvae_tf.losses.average_group_elbo`).

        Args:
            images: `[N, *input_shape]`; group_ids: int32 `[N]` (-1: a padding row, left out);
            num_groups: scalar, the number of groups (the loss is per group).
            noise: optional dict of standard noise `content` `[N, content_dim]`, `style`
                `[N, style_dim]` and, for the mixture, `component` uniform `[N]`; drawn when omitted.
            num_segments: rows of the per-group tensors, `>= num_groups` (`num_groups` when
                omitted). Under XLA it must not depend on the data, or every batch recompiles:
                the pair form passes the batch size.

        Returns:
            dict of scalars `loss`, `reconstruction`, `kl_style`, `kl_content`.
        """
        # Padding rows (`to_pairs(pad_to=...)`) have group id -1: segment sums drop them, batch
        # normalisation leaves them out of its statistics, and their terms are masked out below.
        is_observed = group_ids >= 0  # [N]
        observed = tf.cast(is_observed, tf.float32)
        encoded = self._encode(images, training=training, observed=is_observed)
        if noise is None:
            noise = self._draw_noise(tf.shape(images)[0])
        content_mean, content_log_var = encoded["content_mean"], encoded["content_log_var"]
        segments = num_groups if num_segments is None else num_segments
        if self.aggregation == "product":
            group_mean, group_log_var = grouping.product_of_normals(
                content_mean, content_log_var, group_ids, segments
            )  # [segments, content_dim]; empty segments are the prior, with KL 0
            rows = tf.maximum(group_ids, 0)
            content = distributions.reparameterize(
                tf.gather(group_mean, rows), tf.gather(group_log_var, rows), noise["content"]
            )  # [N, content_dim]
            kl_content = distributions.kl_standard_normal(group_mean, group_log_var)  # [segments]
        else:
            check = tf.debugging.assert_non_negative(
                group_ids, message="aggregation='mixture' takes no padding rows (group id -1): no `pad_to`"
            )
            with tf.control_dependencies([check]):
                member = grouping.sample_mixture_components(group_ids, segments, noise["component"])  # [N]
            content = distributions.reparameterize(
                tf.gather(content_mean, member), tf.gather(content_log_var, member), noise["content"]
            )
            kl_content = distributions.mixture_kl_standard_normal(
                content, content_mean, content_log_var, group_ids, segments
            )  # [segments], 0 for empty ones
        style = distributions.reparameterize(encoded["style_mean"], encoded["style_log_var"], noise["style"])
        kl_style = distributions.kl_standard_normal(encoded["style_mean"], encoded["style_log_var"]) * observed  # [N]
        # Pixels flattened to one event axis: the same log-density, and a reduction XLA's CPU
        # backend runs several times faster than over a trailing axis of size 1.
        pixels = (-1, int(np.prod(self.input_shape)))
        params = self._decode(content, style, training=training, observed=is_observed)
        params = {name: tf.reshape(tf.cast(value, images.dtype), pixels) for name, value in params.items()}
        log_likelihood = distributions.likelihood(self.likelihood, params, 1, self.observation_scale).log_prob(
            tf.reshape(images, pixels)
        ) * tf.cast(observed, images.dtype)  # [N]
        return losses.average_group_elbo(
            log_likelihood, kl_style, kl_content, num_groups, self.kl_style_weight, self.kl_content_weight
        )

    def train_step(self, data):
        images, group_ids, num_groups, segments = self._unpack(data)
        with tf.GradientTape() as tape:
            terms = self.compute_elbo_terms(images, group_ids, num_groups, training=True, num_segments=segments)
            loss = self.optimizer.scale_loss(terms["loss"] + sum(self.losses))
        gradients = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(gradients, self.trainable_weights)
        return self._update_trackers(terms, num_groups)

    def test_step(self, data):
        images, group_ids, num_groups, segments = self._unpack(data)
        terms = self.compute_elbo_terms(images, group_ids, num_groups, training=False, num_segments=segments)
        return self._update_trackers(terms, num_groups)

    def predict_step(self, data):
        images = self._unpack(data)[0]
        return self._encode(images)

    # Helpers.

    def _fused(self, step_function, keras_function):
        """`keras_function`, or under XLA with several steps per execution, the fused executions."""
        if self.jit_compile is True and self.steps_per_execution > 1 and not self.run_eagerly:
            return execution.fused_function(self, step_function, fallback=keras_function)
        return keras_function

    def _observed(self, rows, observed):
        """`observed` (bool `[N]`), or every one of `rows` observed when it is None."""
        return tf.ones(tf.shape(rows)[:1], tf.bool) if observed is None else tf.convert_to_tensor(observed)

    def _encode(self, images, training=False, observed=None):
        images = tf.convert_to_tensor(images)
        observed = self._observed(images, observed)
        encoded = self.encoder({"images": images, "observed": observed}, training=training)
        encoded = {name: tf.cast(value, tf.float32) for name, value in encoded.items()}
        for name in ("style_log_var", "content_log_var"):
            encoded[name] = grouping.clamp_log_var(encoded[name])
        return encoded

    def _decode(self, content, style, training=False, observed=None):
        content, style = tf.convert_to_tensor(content), tf.convert_to_tensor(style)
        observed = self._observed(content, observed)
        return self.decoder({"content": content, "style": style, "observed": observed}, training=training)

    def _draw_noise(self, num_observations):
        """Standard noise for one step, from the seed generator's next seed. Philox is named
        explicitly: under XLA on the CPU, the auto-selected algorithm's key derivation makes each
        draw about ten times slower (benchmarks/README.md)."""
        seed = tf.cast(self.seed_generator.next(), tf.int32)
        both = tf.random.stateless_normal(
            (num_observations, self.content_dim + self.style_dim), seed, alg="philox"
        )
        noise = {"content": both[:, : self.content_dim], "style": both[:, self.content_dim :]}
        if self.aggregation == "mixture":
            seed = tf.random.experimental.stateless_fold_in(seed, 1)
            noise["component"] = tf.random.stateless_uniform((num_observations,), seed, alg="philox")
        return noise

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
            return images, group_ids, tf.reduce_max(group_ids) + 1, size
        raise ValueError(
            "A batch of groups must be a tf.RaggedTensor [groups, (observations), *input_shape] or a pair "
            f"(images, group_ids); got {type(data).__name__}."
        )

    def _check_batches(self, datasets):
        """Checks `(name, value)` pairs of what `fit` or `evaluate` got.

        Refuses arrays (Keras would split groups) and, under `jit_compile=True`, ragged batches:
        XLA compiles the step for every batch shape, and batches of whole groups vary (about 15x
        slower on the digits, `python -m benchmarks.ragged_xla`). Under `jit_compile="auto"`,
        XLA is on for pairs where Keras found it and off for ragged batches.
        """
        ragged = []
        for name, batches in datasets:
            if isinstance(batches, (np.ndarray, tf.Tensor, tuple, list, dict)):
                raise ValueError(
                    f"`{name}` must be a tf.data.Dataset of batches of whole groups (see "
                    "mlvae_tf.data.grouped_dataset), not arrays: Keras would split groups across batches."
                )
            if isinstance(batches, tf.data.Dataset) and isinstance(batches.element_spec, tf.RaggedTensorSpec):
                ragged.append(name)
        if not self.compiled:
            return
        if getattr(self, "_auto_jit", None) is not None:
            jit_compile = self._auto_jit and not ragged
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

    def _update_trackers(self, terms, num_groups):
        weight = tf.cast(num_groups, tf.float32)  # epoch averages are per group
        for name, tracker in self.trackers.items():
            tracker.update_state(terms[name], sample_weight=weight)
        return {name: tracker.result() for name, tracker in self.trackers.items()}
