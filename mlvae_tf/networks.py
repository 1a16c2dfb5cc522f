"""Encoder and decoder builders from the paper's supplement (section 2.1).

`build_encoder` returns a functional `keras.Model` from `{"images": [N, *input_shape],
"observed": bool [N]}` to the four posterior parameters `style_mean, style_log_var, content_mean,
content_log_var`, each `[N, d]`. `build_decoder` returns one from `{"content": [N, content_dim],
"style": [N, style_dim], "observed": bool [N]}` to the likelihood parameters, a dict of
`[N, *input_shape]` tensors (`logits`, or `mean` and optionally `log_var`).

`observed` is False on the padding rows of `mlvae_tf.data.to_pairs(pad_to=...)`: batch
normalisation leaves them out of its batch statistics and moving averages (training mode), so a
padded batch trains exactly as the same batch without padding. In inference mode it is unused.
"""

import math

import keras
import tensorflow as tf
from keras import layers, ops

__all__ = ["ARCHITECTURES", "AffineWarp", "build_encoder", "build_decoder", "validate_architecture"]

ARCHITECTURES = ("mlp", "conv64", "spatial")
POSE_DIMS = 4  # "spatial": the style's first dimensions set the rotation, log-scale and x, y shift of the image
POSE_UNITS = (0.4, 0.15, 0.2, 0.2)  # radians, log-scale, half image sides, per unit of the style latent
ENCODER_OUTPUTS = ("style_mean", "style_log_var", "content_mean", "content_log_var")


def validate_architecture(architecture, input_shape, style_dim=None):
    """Raises `ValueError` unless `architecture` can take images of `input_shape` (and, when given,
    a style of `style_dim`)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {ARCHITECTURES}, got {architecture!r}.")
    if architecture == "spatial":
        if len(input_shape) != 3:
            raise ValueError("`architecture='spatial'` needs `input_shape` (height, width, channels), got "
                             f"{tuple(input_shape)}.")
        if style_dim is not None and style_dim < POSE_DIMS:
            raise ValueError(f"`architecture='spatial'` needs `style_dim` >= {POSE_DIMS} (rotation, scale and x, y "
                             f"shift), got {style_dim}.")
    if architecture == "conv64":
        if len(input_shape) != 3 or input_shape[0] % 8 or input_shape[1] % 8:
            raise ValueError(
                "`architecture='conv64'` needs `input_shape` (height, width, channels) with height and "
                f"width multiples of 8 (three stride-2 deconvolutions), got {tuple(input_shape)}."
            )


def _crelu(x):
    """Concatenated ReLU: `[relu(x), relu(-x)]`, doubling the last axis."""
    return ops.concatenate([ops.relu(x), ops.relu(-x)], axis=-1)


@keras.saving.register_keras_serializable(package="mlvae_tf")
class MaskedBatchNormalization(layers.BatchNormalization):
    """`BatchNormalization` whose masked batch statistics are those of the global batch under a
    `tf.distribute` strategy of several replicas (Keras's `synchronized=True` ignores a mask), so
    that a step on several replicas is the one-device step; otherwise Keras's layer."""

    def _moments(self, inputs, mask):
        context = tf.distribute.get_replica_context()
        if mask is None or context is None or context.num_replicas_in_sync == 1:
            return super()._moments(inputs, mask)
        observed = ops.broadcast_to(ops.cast(ops.expand_dims(mask, -1), "bool"), ops.shape(inputs))
        axes = self._reduction_axes
        total, count = context.all_reduce(tf.distribute.ReduceOp.SUM, [
            ops.sum(ops.where(observed, inputs, 0.0), axes), ops.sum(ops.cast(observed, inputs.dtype), axes)])
        mean = total / (count + keras.config.epsilon())  # [C]
        squares = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                     ops.sum(ops.where(observed, ops.square(inputs - mean), 0.0), axes))
        return mean, squares / (count + keras.config.epsilon())


def _batch_norm(h, observed):
    """`BatchNormalization` of `h` `[N, ..., C]` whose batch statistics count only observed rows.

    Keras attaches the mask to the layer's output; the activation that follows is an op (`ops.relu`,
    `_crelu`), not a layer, so the mask stops there instead of reaching layers that cannot take it."""
    mask = ops.reshape(observed, (-1,) + (1,) * (len(h.shape) - 2))  # [N, 1, ...], broadcast by the layer
    return MaskedBatchNormalization()(h, mask=mask)


def _bounded_log_var(x):
    """`5 * tanh(x)`: the paper's bounded log-variance head."""
    return 5.0 * ops.tanh(x)


def build_encoder(architecture, input_shape, content_dim, style_dim, hidden_units=500):
    """q(s_i | x_i) and q(c | x_i): the per-observation posterior parameters.

    "mlp" (MNIST) and "spatial": x -> Dense(hidden_units, tanh) -> four linear heads of size d (one
    fused Dense).
    "conv64" (MS-Celeb-1M): four Conv(4, stride 2) 64/128/256/512 + BatchNorm + ReLU, two
    Dense(256) + BatchNorm + CReLU, linear mean heads, log-variance heads `5 * tanh`.
    """
    validate_architecture(architecture, input_shape, style_dim)
    images = keras.Input(shape=tuple(input_shape), name="images")
    observed = keras.Input(shape=(), dtype="bool", name="observed")
    sizes = [style_dim, style_dim, content_dim, content_dim]
    if architecture in ("mlp", "spatial"):
        h = layers.Flatten()(images)
        h = layers.Dense(hidden_units, activation="tanh", name="e0")(h)
        heads = layers.Dense(sum(sizes), name="heads")(h)  # [N, 2 * style_dim + 2 * content_dim]
        outputs = ops.split(heads, [sizes[0], sum(sizes[:2]), sum(sizes[:3])], axis=-1)
    else:
        h = images
        for i, filters in enumerate((64, 128, 256, 512)):
            h = layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False, name=f"e{i + 1}")(h)
            h = ops.relu(_batch_norm(h, observed))
        h = layers.Flatten()(h)
        for i in (5, 6):
            h = layers.Dense(256, use_bias=False, name=f"e{i}")(h)
            h = _crelu(_batch_norm(h, observed))
        outputs = [layers.Dense(size, name=f"head_{name}")(h) for size, name in zip(sizes, ENCODER_OUTPUTS)]
        outputs[1] = _bounded_log_var(outputs[1])
        outputs[3] = _bounded_log_var(outputs[3])
    outputs = {name: layers.Identity(name=name)(t) for name, t in zip(ENCODER_OUTPUTS, outputs)}
    return keras.Model({"images": images, "observed": observed}, outputs, name="encoder")


@keras.saving.register_keras_serializable(package="mlvae_tf")
class AffineWarp(layers.Layer):
    """Moves images by a pose: output pixel p reads the input, bilinearly, at R(-angle)(p - shift) / scale.

    Coordinates run over [-1, 1] along each side, from pixel centres; the pose `[N, 4]` is in the
    style's units, `POSE_UNITS` per unit: angle (radians), log-scale, x and y shift (half image
    sides). A point outside the input reads its nearest border pixel. Zero is the identity.

    Call args: `images` `[N, H, W, C]`, `pose` `[N, 4]`. Returns `[N, H, W, C]`.
    """

    def call(self, images, pose):
        height, width, channels = images.shape[1:]
        pose = pose * tf.constant(POSE_UNITS, pose.dtype)
        angle, log_scale, shift_x, shift_y = (pose[:, i, None, None] for i in range(4))  # [N, 1, 1] each
        ys = (tf.range(height, dtype=pose.dtype) + 0.5) / height * 2.0 - 1.0
        xs = (tf.range(width, dtype=pose.dtype) + 0.5) / width * 2.0 - 1.0
        dx, dy = xs[None, None, :] - shift_x, ys[None, :, None] - shift_y  # [N, 1, W], [N, H, 1]
        cos, sin, inverse = tf.cos(angle), tf.sin(angle), tf.exp(-log_scale)
        u = (cos * dx + sin * dy) * inverse  # [N, H, W]: where each output pixel reads, input coordinates
        v = (cos * dy - sin * dx) * inverse
        column = tf.clip_by_value((u + 1.0) * (width / 2.0) - 0.5, 0.0, width - 1.0)
        row = tf.clip_by_value((v + 1.0) * (height / 2.0) - 0.5, 0.0, height - 1.0)
        left, top = tf.floor(column), tf.floor(row)
        fx, fy = (column - left)[..., None], (row - top)[..., None]  # [N, H, W, 1]
        left, top = tf.cast(left, tf.int32), tf.cast(top, tf.int32)
        right, bottom = tf.minimum(left + 1, width - 1), tf.minimum(top + 1, height - 1)
        flat = tf.reshape(images, [-1, channels])  # [N * H * W, C]
        base = (tf.range(tf.shape(images)[0]) * (height * width))[:, None, None]

        def at(r, c):
            return tf.gather(flat, base + r * width + c)  # [N, H, W, C]

        return ((1.0 - fy) * ((1.0 - fx) * at(top, left) + fx * at(top, right))
                + fy * ((1.0 - fx) * at(bottom, left) + fx * at(bottom, right)))

    def compute_output_shape(self, images_shape, pose_shape):
        return images_shape


def _param_names(likelihood):
    return {"bernoulli": ("logits",), "normal": ("mean", "log_var"), "normal_fixed": ("mean",)}[likelihood]


def build_decoder(architecture, input_shape, content_dim, style_dim, likelihood, hidden_units=500):
    """p(x_i | c, s_i): likelihood parameters from the concatenated `(content, style)`.

    "mlp": Dense(hidden_units, tanh) -> Dense(prod(input_shape)) per parameter.
    "spatial" (beyond the paper, for images whose objects move, turn and resize): the "mlp" decoder
    draws each parameter unposed from the content and the style's dimensions after the first
    `POSE_DIMS`, and `AffineWarp` moves it by those first four (rotation, log-scale, x and y
    shift), so that the pose acts on the image the same way for every content.
    "conv64": Dense to (H/8, W/8, 512) + BatchNorm + ReLU, three Conv2DTranspose(4, stride 2)
    256/128/64 + BatchNorm + ReLU, then a Conv(3) per parameter; log-variance `5 * tanh`.
    The supplement lists three deconvolutions but says "all four layers are followed by Batch
    Normalisation and ReLU" and does not say how the latent becomes an image; the reading here:
    the fourth is this linear front end, from `(c, s)` to an (H/8, W/8, 512) map (the mirror of the
    encoder's last convolution), so the three stride-2 deconvolutions reach H x W.
    """
    validate_architecture(architecture, input_shape, style_dim)
    content = keras.Input(shape=(content_dim,), name="content")
    style = keras.Input(shape=(style_dim,), name="style")
    observed = keras.Input(shape=(), dtype="bool", name="observed")
    if architecture == "spatial":  # the MLP draws the image unposed, from the content and the style's rest
        h = layers.Concatenate()([content, style[:, POSE_DIMS:]]) if style_dim > POSE_DIMS else content
    else:
        h = layers.Concatenate()([content, style])
    names = _param_names(likelihood)
    if architecture in ("mlp", "spatial"):
        h = layers.Dense(hidden_units, activation="tanh", name="d0")(h)
        fused = layers.Dense(len(names) * math.prod(input_shape), name="d1")(h)
        params = [layers.Reshape(tuple(input_shape))(t) for t in ops.split(fused, len(names), axis=-1)]
        if architecture == "spatial":
            params = [AffineWarp(name=f"pose_{name}")(t, style[:, :POSE_DIMS]) for name, t in zip(names, params)]
    else:
        height, width, channels = input_shape
        h = layers.Dense((height // 8) * (width // 8) * 512, use_bias=False, name="d0")(h)
        h = ops.relu(_batch_norm(h, observed))
        h = layers.Reshape((height // 8, width // 8, 512))(h)
        for i, filters in enumerate((256, 128, 64)):
            h = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"d{i + 1}")(h)
            h = ops.relu(_batch_norm(h, observed))
        params = [layers.Conv2D(channels, 3, padding="same", name=f"out_{name}")(h) for name in names]
    params = dict(zip(names, params))
    if "log_var" in params:
        params["log_var"] = _bounded_log_var(params["log_var"])
    params = {name: layers.Identity(name=name)(t) for name, t in params.items()}
    return keras.Model({"content": content, "style": style, "observed": observed}, params, name="decoder")
