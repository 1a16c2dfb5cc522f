"""SVI: the paper's non-amortised baseline (Figure 3a; supplement 2.1, "Specific case for SVI")."""

import keras
import numpy as np
import tensorflow as tf

from mlvae_tf import distributions, grouping, validation
from mlvae_tf.models.autoencoder import Autoencoder

__all__ = ["SVI"]

_INITIAL_LOG_VAR = -2.0  # of every fresh posterior, in training and at inference


def _fingerprints(images):
    """One int64 key per image, from its bytes. `[N]`."""
    flat = tf.reshape(tf.cast(images, tf.float32), [tf.shape(images)[0], -1])
    return tf.bitcast(tf.fingerprint(flat), tf.int64)  # [N, 8] bytes -> [N]


@keras.saving.register_keras_serializable(package="mlvae_tf")
class SVI(Autoencoder):
    """Stochastic variational inference for grouped observations, with the ML-VAE's decoder.

    There is no encoder: the parameters of q(c_G) of every training group and of q(s_i) of every
    training observation are variables (embedding tables), learnt with the decoder by the same
    group ELBO as the ML-VAE's (content sampled per observation from its group's posterior, its
    KL once per group of the batch). `fit` takes the same batches of groups as the other models;
    each image is found in the tables by its bytes, so `index(x, group_ids)` must first register
    the training images. Images it was not indexed with (validation, test) get their posteriors
    by test-time inference, `infer`: `inference_steps` Adam steps on fresh parameters with the
    decoder fixed. `encode`, `encode_groups` and validation losses run that inference.

    Args:
        input_shape, content_dim, style_dim, architecture, likelihood, hidden_units,
            observation_scale, kl_style_weight, kl_content_weight, seed: as `Autoencoder`.
        num_observations, num_groups: sizes of the tables (the training set's).
        inference_steps: Adam steps of test-time inference.
        inference_learning_rate: their learning rate.

    Example:
        >>> model = SVI.for_data(x, labels, input_shape=(8, 8, 1), content_dim=5, style_dim=3)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=8), epochs=1)
        >>> model.encode_groups(x_test[:6], [0, 0, 1, 1, 2, 2])  # runs test-time inference
    """

    AMORTISED = False

    def __init__(self, input_shape, num_observations=1, num_groups=1, inference_steps=100,
                 inference_learning_rate=0.05, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.num_observations = validation.check_positive_int(num_observations, "num_observations")
        self.num_groups = validation.check_positive_int(num_groups, "num_groups")
        self.inference_steps = validation.check_positive_int(inference_steps, "inference_steps")
        if not inference_learning_rate > 0:
            raise ValueError(f"`inference_learning_rate` must be > 0, got {inference_learning_rate!r}.")
        self.inference_learning_rate = float(inference_learning_rate)
        rows = lambda size, dim, init, name: self.add_weight(shape=(size, dim), initializer=init, name=name)  # noqa: E731
        init = keras.initializers.RandomNormal(stddev=0.1, seed=self.seed)
        self.content_mean = rows(self.num_groups, self.content_dim, init, "content_mean")
        self.content_log_var = rows(self.num_groups, self.content_dim, keras.initializers.Constant(_INITIAL_LOG_VAR),
                                    "content_log_var")
        self.style_mean = rows(self.num_observations, self.style_dim, init, "style_mean")
        self.style_log_var = rows(self.num_observations, self.style_dim, keras.initializers.Constant(_INITIAL_LOG_VAR),
                                  "style_log_var")
        table = lambda dtype, name: self.add_weight(shape=(self.num_observations,), dtype=dtype,  # noqa: E731
                                                    initializer="zeros", trainable=False, name=name)
        self.keys = table("int64", "keys")  # sorted fingerprints of the training images
        self.rows = table("int32", "rows")  # the observation (style row) of each key
        self.groups = table("int32", "groups")  # the group (content row) of each key

    @classmethod
    def for_data(cls, x, group_ids, **kwargs):
        """An `SVI` with tables sized for, and indexed with, the training images `x` and their
        group labels (any labels: renumbered with `mlvae_tf.data.group_index`)."""
        from mlvae_tf.data import group_index

        ids, groups = group_index(group_ids, name="group_ids")
        model = cls(num_observations=len(x), num_groups=len(groups), **kwargs)
        model.index(x, ids)
        return model

    def index(self, x, group_ids):
        """Registers the training images: row i of `x` is observation i, of group `group_ids[i]`.

        Args:
            x: float `[num_observations, *input_shape]`, distinct images.
            group_ids: int `[num_observations]` in `[0, num_groups)`.
        """
        x = validation.check_images(np.asarray(x, np.float32), self.input_shape, name="x")
        group_ids = np.asarray(group_ids)
        if len(x) != self.num_observations or group_ids.shape != (self.num_observations,):
            raise ValueError(f"`x` and `group_ids` must hold num_observations={self.num_observations} rows, got "
                             f"{len(x)} and {group_ids.shape}.")
        if group_ids.min() < 0 or group_ids.max() >= self.num_groups:
            raise ValueError(f"`group_ids` must lie in [0, num_groups={self.num_groups}).")
        keys = _fingerprints(x).numpy()
        order = np.argsort(keys, kind="stable")
        if np.any(np.diff(keys[order]) == 0):
            raise ValueError("`x` holds identical images; SVI gives each training image its own style row.")
        self.keys.assign(keys[order])
        self.rows.assign(order.astype(np.int32))
        self.groups.assign(group_ids[order].astype(np.int32))

    def get_config(self):
        return {**super().get_config(), "num_observations": self.num_observations, "num_groups": self.num_groups,
                "inference_steps": self.inference_steps, "inference_learning_rate": self.inference_learning_rate}

    # Inference: fresh posteriors by optimisation.

    def encode(self, images):
        """Each image's own posteriors by test-time inference (each image a group of one).

        Returns: as `MLVAE.encode`."""
        return self._encode(validation.check_images(images, self.input_shape))

    def encode_groups(self, images, group_ids, num_groups=None):
        """Group posteriors q(c_g) and styles q(s_i) by test-time inference on the group ELBO.

        Returns: as `MLVAE.encode_groups`."""
        images = validation.check_images(images, self.input_shape)
        group_ids, num_groups = validation.check_group_ids(group_ids, images.shape[0], num_groups)
        return self.infer(images, group_ids, num_groups)

    def infer(self, images, group_ids, num_groups, steps=None):
        """`steps` (default `inference_steps`) Adam steps on fresh posterior parameters of these
        groups and observations, maximising their group ELBO with the decoder fixed.

        Returns:
            dict: `content_mean`, `content_log_var` `[num_groups, content_dim]`; `style_mean`,
            `style_log_var` `[N, style_dim]`.
        """
        steps = self.inference_steps if steps is None else validation.check_positive_int(steps, "steps")
        return self._infer(images, group_ids, num_groups, steps)

    def _encode(self, images, training=False, observed=None):
        n = tf.shape(images)[0]
        return self._infer(images, tf.range(n, dtype=tf.int32), n, self.inference_steps)

    def _infer(self, images, group_ids, num_groups, steps):
        """`infer` as one TensorFlow graph, traced once for any sizes and number of steps."""
        as_int = lambda value: tf.cast(value, tf.int32)  # noqa: E731  (tensors: no retracing per value)
        return self._infer_graph(tf.convert_to_tensor(images), as_int(group_ids), as_int(num_groups), as_int(steps))

    @tf.function(reduce_retracing=True)
    def _infer_graph(self, images, group_ids, num_groups, steps):
        n = tf.shape(images)[0]
        params = [tf.zeros([num_groups, self.content_dim]), tf.fill([num_groups, self.content_dim], _INITIAL_LOG_VAR),
                  tf.zeros([n, self.style_dim]), tf.fill([n, self.style_dim], _INITIAL_LOG_VAR)]
        moments = [tf.zeros_like(p) for p in params] + [tf.zeros_like(p) for p in params]
        seed = self._next_seed()
        beta_1, beta_2, rate = 0.9, 0.999, self.inference_learning_rate
        for step in tf.range(steps):
            noise = self._draw_noise(n, tf.random.experimental.stateless_fold_in(seed, step))
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = self._terms_of(images, group_ids, num_groups, dict(zip(_PARAMS, params)), noise)["loss"]
            gradients = tape.gradient(loss, params)
            t = tf.cast(step + 1, tf.float32)
            updated = []
            for i, (p, g) in enumerate(zip(params, gradients)):
                m = beta_1 * moments[i] + (1 - beta_1) * g
                v = beta_2 * moments[4 + i] + (1 - beta_2) * tf.square(g)
                moments[i], moments[4 + i] = m, v
                updated.append(p - rate * (m / (1 - beta_1**t)) / (tf.sqrt(v / (1 - beta_2**t)) + 1e-8))
            params = updated
        return dict(zip(_PARAMS, params))

    # Training.

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        """The group ELBO's terms (as `MLVAE.compute_elbo_terms`) with the posteriors of the
        tables (training: the images must be indexed) or of test-time inference (otherwise)."""
        if noise is None:
            noise = self._draw_noise(tf.shape(images)[0])
        if not training:
            params = self._infer(images, tf.maximum(group_ids, 0), num_groups, self.inference_steps)
            return self._terms_of(images, group_ids, num_groups, params, noise)
        rows, groups = self._lookup(images, group_ids)
        # Each group of the batch (a whole group, or a chunk of one) takes its training group's
        # content; padding rows (-1) go to an extra segment, dropped.
        batch_groups = tf.where(group_ids >= 0, group_ids, num_groups)
        group_rows = tf.math.unsorted_segment_max(groups, batch_groups, num_groups + 1)[:num_groups]  # [num_groups]
        params = {"content_mean": tf.gather(self.content_mean, group_rows),
                  "content_log_var": tf.gather(self.content_log_var, group_rows),
                  "style_mean": tf.gather(self.style_mean, rows), "style_log_var": tf.gather(self.style_log_var, rows)}
        return self._terms_of(images, group_ids, num_groups, params, noise)

    def _lookup(self, images, group_ids):
        """`(rows, groups)`: each image's observation and training group, int32 `[N]`."""
        keys = _fingerprints(images)
        position = tf.minimum(tf.searchsorted(self.keys, keys), self.num_observations - 1)
        found = tf.equal(tf.gather(self.keys, position), keys) | (group_ids < 0)
        check = tf.debugging.Assert(tf.reduce_all(found), [
            "SVI trains on the images it was indexed with (SVI.index or SVI.for_data); a batch holds others. "
            "Validation and test images get their posteriors by test-time inference (SVI.infer)."])
        with tf.control_dependencies([check]):
            return tf.gather(self.rows, position), tf.gather(self.groups, position)

    def _terms_of(self, images, group_ids, num_groups, params, noise):
        """The group ELBO's terms for given posterior parameters (content `[G, d]`, style `[N, d]`)."""
        is_observed = group_ids >= 0
        observed = tf.cast(is_observed, tf.float32)
        rows = tf.maximum(group_ids, 0)
        content_log_var, style_log_var = (grouping.clamp_log_var(params[name])
                                          for name in ("content_log_var", "style_log_var"))
        content = distributions.reparameterize(tf.gather(params["content_mean"], rows),
                                               tf.gather(content_log_var, rows), noise["content"])
        style = distributions.reparameterize(params["style_mean"], style_log_var, noise["style"])
        # Each group's content KL once: the groups of the batch that have observations.
        present = tf.math.unsorted_segment_max(observed, rows, num_groups)  # [G]
        kl_content = distributions.kl_standard_normal(params["content_mean"], content_log_var) * present
        kl_style = distributions.kl_standard_normal(params["style_mean"], style_log_var) * observed
        log_likelihood = self._log_likelihood(images, content, style, is_observed)
        return self._elbo_terms(log_likelihood, kl_style, kl_content, num_groups)

    def _xla_refusal(self):
        return "is not available to SVI: finding an image in the tables (tf.fingerprint) has no XLA kernel."


_PARAMS = ("content_mean", "content_log_var", "style_mean", "style_log_var")
