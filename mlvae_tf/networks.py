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

__all__ = ["ARCHITECTURES", "AffineWarp", "EquivariantAngle", "SymmetricConv2D", "build_encoder", "build_decoder",
           "validate_architecture"]

ARCHITECTURES = ("mlp", "conv64", "spatial", "equivariant")
POSED = ("spatial", "equivariant")  # the decoders that pose their drawing by the style's first dimensions
POSE_DIMS = 4  # the style's first dimensions set the rotation, log-scale and x, y shift of the image
POSE_UNITS = (0.4, 0.15, 0.2, 0.2)  # radians, log-scale, half image sides, per unit of the style latent
ENCODER_OUTPUTS = ("style_mean", "style_log_var", "content_mean", "content_log_var")


def validate_architecture(architecture, input_shape, style_dim=None):
    """Raises `ValueError` unless `architecture` can take images of `input_shape` (and, when given,
    a style of `style_dim`)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {ARCHITECTURES}, got {architecture!r}.")
    if architecture in POSED:
        if len(input_shape) != 3:
            raise ValueError(f"`architecture={architecture!r}` needs `input_shape` (height, width, channels), got "
                             f"{tuple(input_shape)}.")
        if style_dim is not None and style_dim < POSE_DIMS:
            raise ValueError(f"`architecture={architecture!r}` needs `style_dim` >= {POSE_DIMS} (rotation, scale and "
                             f"x, y shift), got {style_dim}.")
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
    "equivariant": the same, but the style mean's first dimension (the decoder's angle) is
    `EquivariantAngle`'s, in `POSE_UNITS[0]` radians per unit, so that it turns with the image.
    "conv64" (MS-Celeb-1M): four Conv(4, stride 2) 64/128/256/512 + BatchNorm + ReLU, two
    Dense(256) + BatchNorm + CReLU, linear mean heads, log-variance heads `5 * tanh`.
    """
    validate_architecture(architecture, input_shape, style_dim)
    images = keras.Input(shape=tuple(input_shape), name="images")
    observed = keras.Input(shape=(), dtype="bool", name="observed")
    sizes = [style_dim, style_dim, content_dim, content_dim]
    if architecture in ("mlp", *POSED):
        if architecture == "equivariant":  # the style mean's first dimension, the angle, has its own network
            sizes[0] -= 1
        h = layers.Flatten()(images)
        h = layers.Dense(hidden_units, activation="tanh", name="e0")(h)
        heads = layers.Dense(sum(sizes), name="heads")(h)  # [N, 2 * style_dim + 2 * content_dim]
        outputs = ops.split(heads, [sizes[0], sum(sizes[:2]), sum(sizes[:3])], axis=-1)
        if architecture == "equivariant":
            angle = EquivariantAngle(name="angle")(images)  # [N] radians
            outputs[0] = ops.concatenate([angle[:, None] / POSE_UNITS[0], outputs[0]], axis=-1)
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


@keras.saving.register_keras_serializable(package="mlvae_tf")
class SymmetricConv2D(layers.Conv2D):
    """`Conv2D` whose kernels a turn by `2 pi / turns` leaves alike (each kernel the mean of its
    `turns` turns; `turns` 1, 2 or 4).

    With stride 1, "same" padding and an odd square kernel, the convolution of a square image
    turned by `2 pi / turns` is the convolution of the image, turned by as much.
    """

    def __init__(self, *args, turns=4, **kwargs):
        super().__init__(*args, **kwargs)
        if turns not in (1, 2, 4):
            raise ValueError(f"`turns` must be 1, 2 or 4 (the turns that map a pixel grid onto itself), got {turns!r}.")
        self.turns = turns

    def convolution_op(self, inputs, kernel):
        if self.turns == 1:  # EquivariantAngle's default: a plain convolution, nothing to average
            return super().convolution_op(inputs, kernel)
        turned = [kernel]
        for _ in range(self.turns - 1):  # a quarter (4 turns) or a half (2) each
            for _ in range(4 // self.turns):
                kernel = ops.flip(ops.swapaxes(kernel, 0, 1), 0)  # [kh, kw, ...] turned a quarter
            turned.append(kernel)
        return super().convolution_op(inputs, sum(turned) / float(self.turns))

    def get_config(self):
        return {**super().get_config(), "turns": self.turns}


@keras.saving.register_keras_serializable(package="mlvae_tf")
class EquivariantAngle(layers.Layer):
    """An image's angle that turns with the image, modulo `period`: a learned canonicalisation
    (Kaba et al., "Equivariance with learned canonicalization functions", ICML 2023).

    The image is turned back by each of the `copies` angles `k * period / copies`; a small
    convolutional network (a 2 x 2 average pooling where both sides are even, two 3 x 3
    convolutions of `filters` channels, then the maximum over positions) scores each copy, and the
    angle is the circular mean of those angles, with period `period`, weighed by the scores'
    softmax. `period` is a full turn, a half or a quarter (the default: a square's angle is defined
    only modulo a quarter turn). Turning the image by `period / copies` moves each copy to the
    next one's place, up to the bilinear resampling, but for the last, which comes back to the first
    turned by `period`:
    - `symmetric=True`: the convolutions are `SymmetricConv2D`, so the score of a square image does
      not change when it turns by `period`; the copies' scores shift by one place and the angle
      moves with the image, modulo `period`, for every image, whatever the weights. But an object
      whose own symmetry is not a divisor of `period` (a triangle, read modulo a quarter turn)
      scores alike every 30 degrees, and its circular mean has no angle.
    - `symmetric=False` (the default): the score is free, the shift holds for an image whose own
      turn by `period` looks alike (a square, a cross, a circle), and for the others where the
      best-scored copy is not the last.
    With `period=2 * pi` and 4 copies, the copies are the image's quarter turns, and a quarter turn
    of the image adds one to the angle exactly, in both forms.

    Call args: `images` `[N, H, W, C]`. Returns `[N]` radians in `[-period / 2, period / 2]`.
    """

    def __init__(self, copies=6, period=math.pi / 2, filters=8, symmetric=False, **kwargs):
        super().__init__(**kwargs)
        turns = round(2.0 * math.pi / period)
        if turns not in (1, 2, 4) or abs(turns * period - 2.0 * math.pi) > 1e-6:
            raise ValueError("`period` must be 2 pi, pi or pi / 2 radians (a turn that maps a pixel grid onto "
                             f"itself), got {period!r}.")
        if not (isinstance(copies, int) and copies >= 2):
            raise ValueError(f"`copies` must be an integer >= 2, got {copies!r}.")
        self.copies, self.period, self.filters, self.symmetric = copies, period, filters, symmetric
        self.turn = AffineWarp()
        self.score_layers = [SymmetricConv2D(filters, 3, padding="same", activation="relu",
                                             turns=turns if symmetric else 1) for _ in range(2)]
        self.score_head = layers.Dense(1)

    def build(self, images_shape):
        self.pool = 2 if images_shape[1] % 2 == 0 and images_shape[2] % 2 == 0 else 1  # pools commute with turns
        shape = (None, images_shape[1] // self.pool, images_shape[2] // self.pool, images_shape[3])
        for layer in self.score_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.score_head.build((None, self.filters))

    def call(self, images):
        count = ops.shape(images)[0]
        angles = ops.arange(self.copies, dtype=images.dtype) * (self.period / self.copies)  # [K]
        back = ops.stack([-angles / POSE_UNITS[0]] + [ops.zeros_like(angles)] * 3, -1)  # [K, 4], the style's units
        copies = ops.concatenate([self.turn(images, ops.broadcast_to(back[k], (count, 4))) for k in range(self.copies)],
                                 0)  # [K N, H, W, C]
        h = ops.average_pool(copies, self.pool, self.pool) if self.pool > 1 else copies
        for layer in self.score_layers:
            h = layer(h)
        scores = ops.transpose(ops.reshape(self.score_head(ops.max(h, axis=(1, 2))), (self.copies, count)))  # [N, K]
        weights = ops.softmax(scores, axis=-1)
        phase = angles * (2.0 * math.pi / self.period)
        x, y = ops.sum(weights * ops.cos(phase), -1), ops.sum(weights * ops.sin(phase), -1)
        return ops.arctan2(y, x) * (self.period / (2.0 * math.pi))

    def compute_output_shape(self, images_shape):
        return images_shape[:1]

    def get_config(self):
        return {**super().get_config(), "copies": self.copies, "period": self.period, "filters": self.filters,
                "symmetric": self.symmetric}


def _param_names(likelihood):
    return {"bernoulli": ("logits",), "normal": ("mean", "log_var"), "normal_fixed": ("mean",)}[likelihood]


def build_decoder(architecture, input_shape, content_dim, style_dim, likelihood, hidden_units=500):
    """p(x_i | c, s_i): likelihood parameters from the concatenated `(content, style)`.

    "mlp": Dense(hidden_units, tanh) -> Dense(prod(input_shape)) per parameter.
    "spatial" (beyond the paper, for images whose objects move, turn and resize): the "mlp" decoder
    draws each parameter unposed from the content and the style's dimensions after the first
    `POSE_DIMS`, and `AffineWarp` moves it by those first four (rotation, log-scale, x and y
    shift), so that the pose acts on the image the same way for every content. "equivariant": the
    same decoder.
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
    if architecture in POSED:  # the MLP draws the image unposed, from the content and the style's rest
        h = layers.Concatenate()([content, style[:, POSE_DIMS:]]) if style_dim > POSE_DIMS else content
    else:
        h = layers.Concatenate()([content, style])
    names = _param_names(likelihood)
    if architecture in ("mlp", *POSED):
        h = layers.Dense(hidden_units, activation="tanh", name="d0")(h)
        fused = layers.Dense(len(names) * math.prod(input_shape), name="d1")(h)
        params = [layers.Reshape(tuple(input_shape))(t) for t in ops.split(fused, len(names), axis=-1)]
        if architecture in POSED:
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
