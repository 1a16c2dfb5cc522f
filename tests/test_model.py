"""MLVAE: gradients, config, save/load, the public API's shapes and invariants, conv64."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM, make_tiny_model, precision_policy, random_images, run


def _loss_gradients(model, n=12, num_groups=4):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, *model.input_shape)).astype(np.float32)
    group_ids = tf.constant(np.arange(n) % num_groups, tf.int32)
    with tf.GradientTape() as tape:
        loss = model.compute_elbo_terms(x, group_ids, num_groups, training=True)["loss"]
    return dict(zip([w.path for w in model.trainable_weights], tape.gradient(loss, model.trainable_weights)))


@pytest.mark.parametrize("aggregation", ["product", "mixture"])
def test_gradients_reach_every_head(aggregation):
    model = make_tiny_model(aggregation=aggregation, likelihood="normal")
    gradients = _loss_gradients(model)
    assert all(g is not None and np.any(g.numpy() != 0) for g in gradients.values()), gradients.keys()
    heads = gradients[model.encoder.get_layer("heads").kernel.path].numpy()  # [hidden, 2*style + 2*content]
    bounds = np.cumsum([0, STYLE_DIM, STYLE_DIM, CONTENT_DIM, CONTENT_DIM])
    for name, start, stop in zip(mlvae_tf.networks.ENCODER_OUTPUTS, bounds[:-1], bounds[1:]):
        assert np.abs(heads[:, start:stop]).sum() > 0, f"no gradient reaches {name}"


@pytest.mark.slow
def test_conv64_builds_trains_and_every_weight_gets_a_gradient():
    model = mlvae_tf.MLVAE(input_shape=(16, 24, 3), content_dim=4, style_dim=2, architecture="conv64",
                           likelihood="normal", seed=0)
    gradients = _loss_gradients(model, n=6, num_groups=2)
    assert all(np.any(g.numpy() != 0) for g in gradients.values())
    for name in mlvae_tf.networks.ENCODER_OUTPUTS:
        assert f"head_{name}" in [layer.name for layer in model.encoder.layers]
    x = np.random.default_rng(0).uniform(size=(5, 16, 24, 3)).astype(np.float32)
    grp = model.encode_groups(x, [0, 1, 1, 0, 1])
    assert grp["content_mean"].shape == (2, 4) and grp["style_mean"].shape == (5, 2)
    assert model.decode(grp["content_mean"], grp["style_mean"][:2]).shape == (2, 16, 24, 3)
    head = model.encoder.get_layer("head_style_log_var")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 1e4, bias])  # pre-activations far outside [-5, 5]: the bound must bind
    log_var = model.encode(x)["style_log_var"].numpy()
    assert np.all(np.abs(log_var) <= 5.0) and np.abs(log_var).max() > 4.99  # the paper's 5 * tanh head
    head.set_weights([kernel, bias])
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, [2, 3]))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(ds, epochs=1, verbose=0)
    assert any(np.any(b != w.numpy()) for b, w in zip(before, model.trainable_weights))


def _numpy_warp(images, pose):
    """`networks.AffineWarp` recomputed pixel by pixel in NumPy (float64): output pixel p reads the
    input bilinearly at R(-angle)(p - shift) / scale, on [-1, 1] coordinates, clamped to the border."""
    n, h, w, _ = images.shape
    out = np.zeros(images.shape)
    for i in range(n):
        angle, log_scale, shift_x, shift_y = pose[i] * np.asarray(mlvae_tf.networks.POSE_UNITS)
        for r in range(h):
            for q in range(w):
                x, y = (q + 0.5) / w * 2 - 1 - shift_x, (r + 0.5) / h * 2 - 1 - shift_y
                u = (np.cos(angle) * x + np.sin(angle) * y) / np.exp(log_scale)
                v = (np.cos(angle) * y - np.sin(angle) * x) / np.exp(log_scale)
                col, row = np.clip((u + 1) * w / 2 - 0.5, 0, w - 1), np.clip((v + 1) * h / 2 - 0.5, 0, h - 1)
                c0, r0 = int(np.floor(col)), int(np.floor(row))
                c1, r1, fx, fy = min(c0 + 1, w - 1), min(r0 + 1, h - 1), col - c0, row - r0
                out[i, r, q] = ((1 - fy) * ((1 - fx) * images[i, r0, c0] + fx * images[i, r0, c1])
                                + fy * ((1 - fx) * images[i, r1, c0] + fx * images[i, r1, c1]))
    return out


def test_affine_warp_samples_bilinearly_turns_a_quarter_and_shifts_a_pixel():
    warp, units = mlvae_tf.networks.AffineWarp(), mlvae_tf.networks.POSE_UNITS
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 5, 7, 2)).astype(np.float32)
    pose = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(warp(images, pose), _numpy_warp(images, pose), atol=1e-5)
    square = rng.normal(size=(2, 6, 6, 1)).astype(np.float32)
    np.testing.assert_allclose(warp(square, np.zeros((2, 4), np.float32)), square, atol=1e-5)  # zero: as is
    quarter = np.tile(np.float32([np.pi / 2 / units[0], 0, 0, 0]), (2, 1))
    np.testing.assert_allclose(warp(square, quarter), np.rot90(square, k=-1, axes=(1, 2)), atol=1e-5)
    right = np.tile(np.float32([0, 0, 2 / 6 / units[2], 0]), (2, 1))  # one pixel: 2/6 of [-1, 1]
    shifted = np.asarray(warp(square, right))
    np.testing.assert_allclose(shifted[:, :, 1:], square[:, :, :-1], atol=1e-5)
    np.testing.assert_allclose(shifted[:, :, 0], square[:, :, 0], atol=1e-5)  # the border pixel, repeated


def test_the_spatial_decoder_poses_its_unposed_drawing_by_the_styles_first_four_dimensions(tmp_path):
    model = make_tiny_model(architecture="spatial", input_shape=(6, 6, 3), style_dim=5, likelihood="normal_fixed")
    rng = np.random.default_rng(0)
    content = rng.normal(size=(4, CONTENT_DIM)).astype(np.float32)
    style = rng.normal(size=(4, 5)).astype(np.float32)
    unposed = np.concatenate([np.zeros((4, 4), np.float32), style[:, 4:]], axis=1)
    posed = model.decode_params(content, style)["mean"]
    np.testing.assert_allclose(posed, mlvae_tf.networks.AffineWarp()(model.decode_params(content, unposed)["mean"],
                                                                     style[:, :4]), atol=1e-5)
    with tf.GradientTape() as tape:
        pose = tf.constant(style)
        tape.watch(pose)
        logits = model.decode_params(content, pose)["mean"]
    assert np.all(np.abs(tape.gradient(logits, pose).numpy()[:, :4]).sum(0) > 0)  # every pose dimension acts
    x = random_images(6, seed=2, shape=(6, 6, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, [2, 4])), epochs=1, verbose=0)
    model.save(tmp_path / "spatial.keras")
    loaded = keras.saving.load_model(tmp_path / "spatial.keras")
    np.testing.assert_allclose(loaded.decode_params(content, style)["mean"],
                               model.decode_params(content, style)["mean"], atol=1e-6)
    with pytest.raises(ValueError, match=r"`architecture='spatial'` needs `style_dim` >= 4 .*got 3"):
        make_tiny_model(architecture="spatial", input_shape=(6, 6, 3), style_dim=3)
    with pytest.raises(ValueError, match=r"`architecture='spatial'` needs `input_shape` \(height, width, channels\)"):
        make_tiny_model(architecture="spatial", input_shape=(36,))


@pytest.mark.parametrize("turns", [2, 4])
def test_a_symmetric_convolution_is_one_with_the_mean_of_its_kernels_turns_and_commutes_with_them(turns):
    conv = mlvae_tf.networks.SymmetricConv2D(3, 3, padding="same", turns=turns)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    y = np.asarray(conv(x))
    kernel = conv.kernel.numpy()
    mean = sum(np.rot90(kernel, k * 4 // turns, axes=(0, 1)) for k in range(turns)) / turns  # independent of the layer
    np.testing.assert_allclose(y, tf.nn.conv2d(x, mean, 1, "SAME") + conv.bias.numpy(), atol=1e-5)
    turned = np.rot90(x, 4 // turns, axes=(1, 2)).copy()
    np.testing.assert_allclose(conv(turned), np.rot90(y, 4 // turns, axes=(1, 2)), atol=1e-5)
    with pytest.raises(ValueError, match=r"`turns` must be 1, 2 or 4 .*got 3"):
        mlvae_tf.networks.SymmetricConv2D(3, 3, turns=3)


def test_the_equivariant_angle_turns_with_the_image_whatever_its_weights():
    """With a full-turn period and 4 copies, the copies are the image's quarter turns: a quarter
    turn of the image adds a quarter to the angle, exactly. With the default quarter-turn period
    and symmetric scores, a quarter turn leaves the angle as it is (modulo the period), and it
    stays in [-pi/4, pi/4]."""
    x = np.random.default_rng(0).uniform(size=(5, 8, 8, 2)).astype(np.float32)
    clockwise = np.rot90(x, -1, axes=(1, 2)).copy()  # `AffineWarp`'s positive quarter turn
    full = mlvae_tf.networks.EquivariantAngle(copies=4, period=2 * np.pi)
    difference = np.asarray(full(clockwise)) - np.asarray(full(x))
    np.testing.assert_allclose(np.angle(np.exp(1j * (difference - np.pi / 2))), 0, atol=1e-4)
    quarter = mlvae_tf.networks.EquivariantAngle(symmetric=True)
    angle = np.asarray(quarter(x))
    assert np.all(np.abs(angle) <= np.pi / 4 + 1e-6) and np.ptp(angle) > 1e-3  # not one constant
    for k in (1, 2, 3):
        turned = np.asarray(quarter(np.rot90(x, k, axes=(1, 2)).copy()))
        np.testing.assert_allclose(np.angle(np.exp(4j * (turned - angle))), 0, atol=1e-3)
    copy = mlvae_tf.networks.EquivariantAngle.from_config(quarter.get_config())
    assert (copy.copies, copy.period, copy.filters, copy.symmetric) == (6, np.pi / 2, 8, True)
    with pytest.raises(ValueError, match=r"`period` must be 2 pi, pi or pi / 2 radians .*got 1.0"):
        mlvae_tf.networks.EquivariantAngle(period=1.0)
    with pytest.raises(ValueError, match=r"`copies` must be an integer >= 2, got 1"):
        mlvae_tf.networks.EquivariantAngle(copies=1)


def test_the_equivariant_angle_follows_a_cross_turned_by_the_copies_step():
    """The default form (free scores, a quarter-turn period, copies 15 degrees apart): a cross looks
    alike after a quarter turn, so turning it by 15 degrees moves each copy to the next one's place
    and the angle moves by 15 degrees, modulo 90, whatever the weights (made peaked here, as
    training makes them, so that the bilinear resampling does not move the circular mean)."""
    centres = (np.arange(32) + 0.5) / 16 - 1

    def cross(degrees):  # arms 0.25 wide and 0.7 long, soft edges, turned as `AffineWarp` turns
        y, x = np.meshgrid(centres, centres, indexing="ij")
        a = np.radians(degrees)
        u, v = np.cos(a) * x + np.sin(a) * y, np.cos(a) * y - np.sin(a) * x

        def arm(along, across):
            return 1 / (1 + np.exp(-20 * (0.7 - np.abs(along)))) / (1 + np.exp(-20 * (0.25 - np.abs(across))))

        return np.maximum(arm(u, v), arm(v, u))[None, ..., None].astype(np.float32)

    keras.utils.set_random_seed(0)
    layer = mlvae_tf.networks.EquivariantAngle()
    layer(cross(0))
    layer.score_head.kernel.assign(layer.score_head.kernel * 1000)
    angles = np.degrees([float(layer(cross(d))[0]) for d in range(0, 90, 15)])
    steps = (np.diff(angles) + 45) % 90 - 45
    np.testing.assert_allclose(steps, 15, atol=0.1)


def test_the_equivariant_encoder_gives_the_style_its_angle_and_the_spatial_decoder(tmp_path):
    model = make_tiny_model(architecture="equivariant", input_shape=(8, 8, 3), style_dim=5, likelihood="normal_fixed")
    x = random_images(6, seed=2, shape=(8, 8, 3))
    angle = np.asarray(model.encoder.get_layer("angle")(x))
    style = np.asarray(model.encode(x)["style_mean"])
    np.testing.assert_allclose(style[:, 0] * mlvae_tf.networks.POSE_UNITS[0], angle, atol=1e-6)
    assert np.all(np.abs(angle) <= np.pi / 4 + 1e-6)  # radians, modulo a quarter turn
    content, pose = np.zeros((6, CONTENT_DIM), np.float32), style
    unposed = np.concatenate([np.zeros((6, 4), np.float32), pose[:, 4:]], axis=1)
    np.testing.assert_allclose(model.decode_params(content, pose)["mean"], mlvae_tf.networks.AffineWarp()(
        model.decode_params(content, unposed)["mean"], pose[:, :4]), atol=1e-5)  # the "spatial" decoder
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.numpy().copy() for w in model.encoder.get_layer("angle").weights]
    model.fit(tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, [2, 4])), epochs=1, verbose=0)
    assert all(np.abs(w.numpy() - b).max() > 0 for w, b in zip(model.encoder.get_layer("angle").weights, before))
    model.save(tmp_path / "equivariant.keras")
    loaded = keras.saving.load_model(tmp_path / "equivariant.keras")
    np.testing.assert_allclose(loaded.encode(x)["style_mean"], model.encode(x)["style_mean"], atol=1e-6)
    with pytest.raises(ValueError, match=r"`architecture='equivariant'` needs `style_dim` >= 4 .*got 3"):
        make_tiny_model(architecture="equivariant", input_shape=(8, 8, 3), style_dim=3)


def test_paper_mnist_encoder_has_the_supplement_shapes():
    model = mlvae_tf.MLVAE(input_shape=(28, 28, 1), content_dim=10, style_dim=10)
    assert model.encoder.get_layer("e0").kernel.shape == (784, 500)
    assert model.encoder.get_layer("heads").kernel.shape == (500, 40)  # four heads of size d = 10
    assert model.decoder.get_layer("d0").kernel.shape == (20, 500)
    assert model.decoder.get_layer("d1").kernel.shape == (500, 784)


def test_train_step_changes_weights_and_test_step_does_not():
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = np.random.default_rng(0).uniform(size=(9, *INPUT_SHAPE)).astype(np.float32)
    batch = tf.RaggedTensor.from_row_lengths(x, [4, 1, 4])
    before = [w.numpy().copy() for w in model.weights]
    model.test_step(batch)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights) if "seed" not in w.path)
    logs = model.train_step(batch)
    assert set(logs) == {"loss", "reconstruction", "kl_style", "kl_content"}
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)


def test_config_round_trip():
    model = make_tiny_model(likelihood="normal_fixed", aggregation="mixture", observation_scale=0.3,
                            kl_style_weight=2.0, kl_content_weight=0.5)
    config = model.get_config()
    clone = mlvae_tf.MLVAE.from_config(config)
    assert clone.get_config() == config
    assert config["input_shape"] == list(INPUT_SHAPE) and config["seed"] == 0


def test_encode_groups_gives_every_member_the_product_and_singletons_their_own_posterior():
    model = make_tiny_model()
    x = np.random.default_rng(1).uniform(size=(6, *INPUT_SHAPE)).astype(np.float32)
    enc = model.encode(x)
    grp = model.encode_groups(x, [0, 1, 1, 2, 1, 0])
    precision = np.exp(-enc["content_log_var"].numpy())
    for g, members in enumerate([[0, 5], [1, 2, 4], [3]]):
        p = precision[members].sum(0)
        np.testing.assert_allclose(grp["content_log_var"][g], -np.log(p), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grp["content_mean"][g], (enc["content_mean"].numpy()[members] * precision[members]).sum(0) / p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grp["content_mean"][2], enc["content_mean"][3], rtol=1e-6)
    np.testing.assert_allclose(grp["style_mean"], enc["style_mean"])
    singles = model.encode_groups(x, np.arange(6))
    np.testing.assert_allclose(singles["content_mean"], enc["content_mean"], rtol=1e-5, atol=1e-6)


def test_decode_is_the_likelihood_mean():
    model = make_tiny_model(likelihood="bernoulli")
    content = np.random.default_rng(2).normal(size=(3, CONTENT_DIM)).astype(np.float32)
    style = np.random.default_rng(3).normal(size=(3, STYLE_DIM)).astype(np.float32)
    logits = model._decode(content, style)["logits"].numpy()
    np.testing.assert_allclose(model.decode(content, style), 1 / (1 + np.exp(-logits)), rtol=1e-5)


def _zero_noise(model, n):
    return {"content": tf.zeros([n, model.content_dim]), "style": tf.zeros([n, model.style_dim]),
            "component": tf.zeros([n])}


def test_decode_params_log_var_is_the_variance_of_the_reconstruction_term():
    """With zero noise the model decodes each image's group mean and style mean; its reconstruction
    term must be the NumPy Normal log-density under `decode_params`' mean and `log_var`."""
    model = make_tiny_model(likelihood="normal")
    x = random_images(7)
    ids = np.array([0, 0, 1, 2, 2, 2, 1], np.int32)
    grp = model.encode_groups(x, ids)
    params = {k: v.numpy() for k, v in model.decode_params(grp["content_mean"].numpy()[ids], grp["style_mean"]).items()}
    assert params["log_var"].shape == x.shape and np.ptp(params["log_var"]) > 1e-3  # a per-pixel variance
    log_density = -0.5 * (np.log(2 * np.pi) + params["log_var"] + (x - params["mean"]) ** 2 / np.exp(params["log_var"]))
    terms = model.compute_elbo_terms(tf.constant(x), tf.constant(ids), 3, noise=_zero_noise(model, 7))
    np.testing.assert_allclose(float(terms["reconstruction"]), -log_density.sum() / 3, rtol=1e-5)


def test_predict_gives_encode_of_every_observation_in_the_datasets_order(digits_split):
    model = make_tiny_model()
    x, labels = digits_split["val"]
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=4, shuffle=False)
    flat = np.concatenate([batch.flat_values.numpy() for batch in ds])
    predicted = model.predict(ds, verbose=0)
    expected = model.encode(flat)
    assert sorted(predicted) == sorted(expected) and len(flat) == len(x)
    for key, value in expected.items():
        np.testing.assert_allclose(predicted[key], value, atol=1e-6, err_msg=key)
    pairs = model.predict(mlvae_tf.data.to_pairs(ds), verbose=0)  # the pair form: the same
    np.testing.assert_allclose(pairs["content_mean"], expected["content_mean"], atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_terms_match_float32(policy):
    x = random_images(9)
    ids = tf.constant([0, 0, 1, 1, 1, 2, 2, 2, 2])
    reference = make_tiny_model()
    expected = reference.compute_elbo_terms(tf.constant(x), ids, 3, noise=_zero_noise(reference, 9))
    with precision_policy(policy):
        model = make_tiny_model()
        model.set_weights(reference.get_weights())
        terms = model.compute_elbo_terms(tf.constant(x), ids, 3, noise=_zero_noise(model, 9))
    for key, value in expected.items():
        assert terms[key].dtype == tf.float32
        np.testing.assert_allclose(float(terms[key]), float(value), rtol=2e-2, err_msg=key)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_keeps_the_grouped_posterior_in_float32(policy):
    with precision_policy(policy):
        model = make_tiny_model()
        assert model.encoder.get_layer("heads").compute_dtype == policy.removeprefix("mixed_")
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        x = random_images(9)
        logs = model.train_step(tf.RaggedTensor.from_row_lengths(x, [4, 1, 4]))
        assert np.isfinite(float(logs["loss"]))
        # The XLA-compiled step on padded pairs, as a GPU user would run it.
        padded = (np.concatenate([x, np.zeros_like(x[:3])]), np.array([0, 0, 0, 0, 1, 2, 2, 2, 2, -1, -1, -1]))
        logs = tf.function(model.train_step, jit_compile=True)(padded)
        assert np.isfinite(float(logs["loss"]))
        grp = model.encode_groups(x, [0, 0, 1, 1, 1, 2, 2, 2, 2])
        assert all(v.dtype == tf.float32 for v in grp.values())
        assert all(w.dtype == "float32" for w in model.trainable_weights)  # variables stay float32


def test_train_step_is_traced_at_most_twice_whatever_the_group_sizes(digits_split):
    """Ragged batches of varying group sizes and counts must not retrace the step each batch."""
    traces = []

    class Counting(mlvae_tf.MLVAE):
        def train_step(self, data):
            traces.append(1)  # runs only while tracing
            return super().train_step(data)

    x, labels = digits_split["train"]
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=7, seed=0)
    model = Counting(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(ds, epochs=2, verbose=0)
    assert 2 * int(ds.cardinality()) > 100 and len(traces) <= 2


@pytest.mark.slow
def test_xla_compiled_step_on_pairs_gives_the_same_loss_as_the_ragged_step(digits_split):
    x, labels = digits_split["train"]
    ragged = mlvae_tf.data.grouped_dataset(x[:60], labels[:60], groups_per_batch=4, max_group_size=5, shuffle=False)
    pairs = mlvae_tf.data.to_pairs(ragged)
    images, group_ids = next(iter(pairs))
    first = next(iter(ragged))
    np.testing.assert_array_equal(images, first.flat_values)
    np.testing.assert_array_equal(group_ids, first.value_rowids())

    model = make_tiny_model()
    n = images.shape[0]
    rng = np.random.default_rng(0)
    noise = {"content": rng.normal(size=(n, CONTENT_DIM)).astype(np.float32),
             "style": rng.normal(size=(n, STYLE_DIM)).astype(np.float32)}
    def loss(data):
        images, group_ids, num_groups, segments = model._unpack(data)
        return model.compute_elbo_terms(images, group_ids, num_groups, noise=noise, num_segments=segments)["loss"]

    eager = loss(first)
    compiled = tf.function(loss, jit_compile=True)((images, group_ids))
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5)

    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(pairs, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _padded_batch(n_pad, group_sizes, seed=0):
    """A pair batch of groups of `group_sizes`, padded to `n_pad` rows, and its noise."""
    rng = np.random.default_rng(seed)
    n = sum(group_sizes)
    images = np.zeros((n_pad, *INPUT_SHAPE), np.float32)
    images[:n] = rng.uniform(size=(n, *INPUT_SHAPE))
    group_ids = np.full(n_pad, -1, np.int32)
    group_ids[:n] = np.repeat(np.arange(len(group_sizes)), group_sizes)
    noise = {"content": rng.normal(size=(n_pad, CONTENT_DIM)).astype(np.float32),
             "style": rng.normal(size=(n_pad, STYLE_DIM)).astype(np.float32)}
    return images, group_ids, noise


@pytest.mark.parametrize("architecture", ["mlp", "conv64"])
@pytest.mark.parametrize("jit", [False, True])
def test_padding_rows_change_neither_the_loss_nor_its_gradients_nor_the_moving_statistics(jit, architecture):
    """In training mode: batch normalisation (conv64) must leave padding rows out of its batch
    statistics and moving averages, as the loss terms do."""
    model = make_tiny_model(architecture=architecture)
    images, group_ids, noise = _padded_batch(20, [4, 1, 6, 3])
    n = 14
    start = model.get_weights()
    start_stats = [w.numpy().copy() for w in model.non_trainable_weights]

    def terms_and_gradients(images, group_ids, noise):
        with tf.GradientTape() as tape:
            batch = (tf.convert_to_tensor(images), tf.convert_to_tensor(group_ids))
            images_, ids, num_groups, segments = model._unpack(batch)
            terms = model.compute_elbo_terms(images_, ids, num_groups, training=True, noise=noise,
                                             num_segments=segments)
        return terms, tape.gradient(terms["loss"], model.trainable_weights)

    def run(*batch):
        model.set_weights(start)
        terms, gradients = (tf.function(terms_and_gradients, jit_compile=True) if jit else terms_and_gradients)(*batch)
        return terms, gradients, [w.numpy().copy() for w in model.non_trainable_weights]

    padded, padded_grads, padded_stats = run(images, group_ids, noise)
    plain, plain_grads, plain_stats = run(images[:n], group_ids[:n], {k: v[:n] for k, v in noise.items()})
    for name in ("loss", "reconstruction", "kl_style", "kl_content"):
        np.testing.assert_allclose(padded[name], plain[name], rtol=1e-5, err_msg=name)
    for a, b in zip(padded_grads, plain_grads):  # float32 sums in another order: relative to the largest
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max() + 1e-6)
    assert len(padded_stats) == (20 if architecture == "conv64" else 0)  # moving mean and variance of 10 BNs
    for a, b, initial in zip(padded_stats, plain_stats, start_stats):
        assert np.any(a != initial)  # the step updated them
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_xla_step_is_one_program_for_any_group_layout_of_a_batch_size():
    """The segment count must not come from the data: XLA would compile anew for every batch."""
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    step = tf.function(model.train_step, jit_compile=True)
    programs = set()
    for sizes in ([4, 1, 6, 3], [2, 2, 2, 2, 2, 2, 2], [20]):
        images, group_ids, _ = _padded_batch(20, sizes)
        programs.add(step.experimental_get_compiler_ir((tf.constant(images), tf.constant(group_ids)))(stage="hlo"))
    assert len(programs) == 1


_YNN_PROBE = """
import os, numpy as np, tensorflow as tf, mlvae_tf
model = mlvae_tf.MLVAE(input_shape=(28, 28, 1), content_dim=2, style_dim=3, hidden_units=8, likelihood="normal_fixed")
model.compile(optimizer="adam", jit_compile=True)
step = tf.function(model.train_step, jit_compile=True)
batch = (tf.zeros([640, 28, 28, 1]), tf.constant(np.repeat(np.arange(64), 10), tf.int32))
print(repr(os.environ["XLA_FLAGS"]), "ynn" in step.experimental_get_compiler_ir(batch)(stage="optimized_hlo"))
"""


@pytest.mark.parametrize(
    "user_flags, expected_flags",
    [
        (None, "--xla_cpu_experimental_ynn_fusion_type="),
        ("", "--xla_cpu_experimental_ynn_fusion_type="),
        ("--xla_cpu_enable_fast_math=false", "--xla_cpu_enable_fast_math=false --xla_cpu_experimental_ynn_fusion_type="),
        ("--xla_cpu_experimental_ynn_fusion_type=reduce", "--xla_cpu_experimental_ynn_fusion_type=reduce"),
    ],
)
def test_xla_flags_turn_ynnpack_fusions_off_keeping_the_users_flags_and_choice(user_flags, expected_flags):
    assert mlvae_tf._xla_flags(user_flags) == expected_flags


@pytest.mark.slow
@pytest.mark.parametrize(
    "user_flags, expected_flags, ynn",
    [
        (None, "--xla_cpu_experimental_ynn_fusion_type=", False),
        ("--xla_cpu_experimental_ynn_fusion_type=reduce", "--xla_cpu_experimental_ynn_fusion_type=reduce", True),
    ],
)
def test_import_turns_ynnpack_fusions_off_unless_xla_flags_choose(user_flags, expected_flags, ynn):
    """On the MNIST shapes TensorFlow 2.21 puts the likelihood's reduction into a YNNPACK fusion
    (the second case shows the probe sees it); importing mlvae_tf turns that off, and a user's own
    choice wins. How the flags combine is unit-tested above; this probe checks the compiled HLO."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if user_flags is not None:
        env["XLA_FLAGS"] = user_flags
    out = run([sys.executable, "-c", _YNN_PROBE], env=env)
    assert out.stdout.strip().splitlines()[-1] == f"{expected_flags!r} {ynn}"


def test_mixture_refuses_xla_up_front():
    model = mlvae_tf.MLVAE(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=8,
                           aggregation="mixture")
    with pytest.raises(ValueError, match="`jit_compile=True` needs aggregation='product'"):
        model.compile(jit_compile=True)


def _ragged_and_pairs(n=46, groups_per_batch=3, max_group_size=4):
    """A ragged dataset of whole groups whose batches vary in size, and its padded pair form."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, *INPUT_SHAPE)).astype(np.float32)
    labels = rng.integers(0, 9, size=n)
    ragged = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch, max_group_size, shuffle=False)
    pad_to = mlvae_tf.data.largest_batch(labels, groups_per_batch, max_group_size)
    return ragged, mlvae_tf.data.to_pairs(ragged, pad_to=pad_to)


@pytest.mark.slow
def test_xla_refuses_ragged_batches_up_front():
    """Under XLA, batches of whole groups would compile the step once per batch shape (about 15x
    slower on the digits): fit and evaluate must say so before building any step."""
    ragged, pairs = _ragged_and_pairs()
    assert len({int(b.flat_values.shape[0]) for b in ragged}) > 1  # the batch shapes vary
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    with pytest.raises(ValueError, match=r"`x` holds ragged batches.*jit_compile=True.*to_pairs"):
        model.fit(ragged, verbose=0)
    with pytest.raises(ValueError, match=r"`validation_data` holds ragged batches"):
        model.fit(pairs, validation_data=ragged, verbose=0)
    with pytest.raises(ValueError, match=r"`x` holds ragged batches"):
        model.evaluate(ragged, verbose=0)
    assert model.train_function is None and model.test_function is None  # refused before any tracing
    history = model.fit(pairs, validation_data=pairs, verbose=0)  # the pair form trains under XLA
    assert model.jit_compile is True and np.isfinite(history.history["val_loss"][-1])


MNIST_SHAPE = (28, 28, 1)  # where XLA pays on a CPU (`GroupedModel._xla_pays`)


def test_default_compile_trains_grouped_batches_on_the_fused_xla_path():
    """`compile()`'s defaults on the "mlp" network, MNIST-size images and a CPU: `fit` on `grouped_dataset`'s ragged
    batches runs them as pairs padded to its largest batch, 10 steps per XLA program: the same
    training as the fast path spelled out (`to_pairs(pad_to=largest_batch(...))`, `jit_compile=True`,
    `steps_per_execution=10`)."""
    x = np.random.default_rng(0).uniform(size=(72, *MNIST_SHAPE)).astype(np.float32)
    labels = np.repeat(np.arange(18), 4)[np.random.default_rng(1).permutation(72)]  # 6 batches of 3 groups of 4
    ragged = mlvae_tf.data.grouped_dataset(x, labels, 3, shuffle=False)
    pairs = mlvae_tf.data.to_pairs(ragged, pad_to=mlvae_tf.data.largest_batch(labels, 3))
    models, histories = [], []
    for batches, arguments in ((ragged, {}), (pairs, {"jit_compile": True, "steps_per_execution": 10})):
        keras.utils.set_random_seed(1)
        models.append(make_tiny_model(input_shape=MNIST_SHAPE))
        models[-1].compile(optimizer=keras.optimizers.Adam(1e-2), **arguments)
        assert models[-1].steps_per_execution == 10 and models[-1]._xla_pays()
        histories.append(models[-1].fit(batches, epochs=2, verbose=0).history)
        assert models[-1].jit_compile is True
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)
    assert np.isfinite(models[0].fit(ragged, validation_data=ragged, verbose=0).history["val_loss"]).all()


def test_default_compile_falls_back_to_graph_mode_and_says_why_once(caplog):
    """Where XLA cannot apply, the default path runs in graph mode and says why, once per model, in
    one line: the mixture; ragged batches whose largest size is unknown (a `map` of
    `grouped_dataset`'s output); batches whose largest is much larger than their mean (padding would
    cost more than XLA gains). XLA comes back for batches padded little."""
    ragged, _ = _ragged_and_pairs()
    mixture = make_tiny_model(aggregation="mixture")
    mixture.compile(optimizer=keras.optimizers.Adam(1e-3))
    with caplog.at_level("WARNING", logger="mlvae_tf"):
        for _ in range(2):
            assert np.isfinite(mixture.fit(ragged, verbose=0).history["loss"][-1])
    assert mixture.jit_compile is False
    assert [r.getMessage() for r in caplog.records] == [
        "mlvae_tf: the steps run without XLA, which needs aggregation='product': the mixture's KL uses ragged ops "
        "that XLA cannot compile."]
    caplog.clear()
    model = make_tiny_model(input_shape=MNIST_SHAPE)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ragged = mlvae_tf.data.grouped_dataset(np.zeros((40, *MNIST_SHAPE), np.float32), np.arange(40) % 9, 3, 4)
    unknown = ragged.map(lambda batch: batch)
    with caplog.at_level("WARNING", logger="mlvae_tf"):
        model.fit(unknown, verbose=0)
        model.fit(unknown, verbose=0)
    assert model.jit_compile is False and len(caplog.records) == 1
    assert "`x` runs without XLA" in caplog.records[0].getMessage() and "\n" not in caplog.records[0].getMessage()
    x = np.random.default_rng(0).uniform(size=(60, *MNIST_SHAPE)).astype(np.float32)
    skewed = np.concatenate([np.zeros(30, int), np.repeat(np.arange(1, 16), 2)])  # one group of 30, fifteen of 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="mlvae_tf"):
        model.fit(mlvae_tf.data.grouped_dataset(x, skewed, 4, seed=0), verbose=0)
    assert model.jit_compile is False and "would cost more than XLA gains" in caplog.records[0].getMessage()
    model.fit(mlvae_tf.data.grouped_dataset(x, skewed, 4, max_group_size=2, seed=0), verbose=0)
    assert model.jit_compile is True  # capped groups: every batch of 4 chunks of 2


def test_the_default_path_keeps_conv64_and_the_digits_in_graph_mode_on_a_cpu(monkeypatch):
    """On a CPU, XLA slows conv64 (40 observations per second in graph mode, 21 under XLA), the
    "equivariant" networks (19 times, fused) and the 8x8 digits (0.92x) and speeds the paper's MNIST
    network and the "spatial" one on 32x32x3 shapes (benchmarks/README.md, `_xla_pays`): the
    default takes graph mode for the first three there, and XLA for all on a GPU (not the mixture)."""
    conv = mlvae_tf.MLVAE(input_shape=(16, 16, 1), content_dim=3, style_dim=2, architecture="conv64")
    digits = make_tiny_model()
    assert not conv._xla_pays() and not digits._xla_pays() and make_tiny_model(input_shape=MNIST_SHAPE)._xla_pays()
    assert make_tiny_model(architecture="spatial", input_shape=(28, 28, 1), style_dim=4)._xla_pays()
    assert not make_tiny_model(architecture="equivariant", input_shape=(28, 28, 1), style_dim=4)._xla_pays()
    real = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else real(kind))
    assert conv._xla_pays() and digits._xla_pays()
    assert not make_tiny_model(aggregation="mixture")._xla_pays()


def test_mixture_names_padding_rows_it_cannot_take():
    model = make_tiny_model(aggregation="mixture")
    images, group_ids, noise = _padded_batch(20, [4, 6])
    noise["component"] = np.full(20, 0.5, np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match="no padding rows"):
        model.compute_elbo_terms(images, group_ids, 2, noise=noise, num_segments=20)


@pytest.mark.parametrize("aggregation", ["product", "mixture"])
def test_ragged_and_pair_forms_give_the_same_terms(aggregation):
    """The pair form sums over batch-size segments (most of them empty), the ragged one over groups."""
    model = make_tiny_model(aggregation=aggregation)
    images, group_ids, noise = _padded_batch(11, [3, 1, 5, 2])
    noise["component"] = np.random.default_rng(1).uniform(size=11).astype(np.float32)
    ragged = model._unpack(tf.RaggedTensor.from_value_rowids(images, group_ids))
    pairs = model._unpack((images, group_ids))
    assert int(ragged[3]) == 4 and int(pairs[3]) == 11
    a = model.compute_elbo_terms(*ragged[:3], noise=noise, num_segments=ragged[3])
    b = model.compute_elbo_terms(*pairs[:3], noise=noise, num_segments=pairs[3])
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)


def _fit_pairs(pairs, steps_per_execution, epochs=2):
    keras.utils.set_random_seed(1)
    model = make_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True, steps_per_execution=steps_per_execution)
    history = model.fit(pairs, epochs=epochs, verbose=0)
    return model, history.history


@pytest.mark.slow
def test_executions_of_several_xla_steps_train_exactly_as_one_step_at_a_time():
    """Under XLA with `steps_per_execution` > 1, each execution's steps run as one XLA program
    (`mlvae_tf.execution`): the same steps on the same batches with the same noise as one step per
    call, including an execution cut short by the end of the epoch (7 batches, 3 per execution)."""
    _, pairs = _ragged_and_pairs(n=60)
    batches = int(pairs.cardinality())
    assert batches % 3
    one, one_history = _fit_pairs(pairs, 1)
    fused, fused_history = _fit_pairs(pairs, 3)
    assert fused.train_function.__qualname__.startswith("fused_function")
    assert int(one.optimizer.iterations) == int(fused.optimizer.iterations) == 2 * batches
    np.testing.assert_allclose(fused_history["loss"], one_history["loss"], rtol=1e-6)
    for a, b in zip(fused.get_weights(), one.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    fused_evaluation = fused.evaluate(pairs, verbose=0, return_dict=True)  # evaluate's executions too
    assert fused.test_function.__qualname__.startswith("fused_function")
    one_evaluation = one.evaluate(pairs, verbose=0, return_dict=True)
    for name in mlvae_tf.MLVAE.TERMS:
        np.testing.assert_allclose(fused_evaluation[name], one_evaluation[name], rtol=1e-5)


def test_an_xla_execution_reads_its_batches_and_runs_one_step_each():
    """One call of the fused train function reads `steps_per_execution` batches, no more, and runs
    one step on each; the last call runs what is left, and the next one ends the epoch."""
    _, pairs = _ragged_and_pairs(n=60)
    batches = int(pairs.cardinality())
    assert batches % 3
    model, _ = _fit_pairs(pairs, 3, epochs=1)
    start = int(model.optimizer.iterations)
    iterator = iter(pairs)
    logs = model.train_function(iterator)
    assert int(model.optimizer.iterations) == start + 3 and set(logs) == set(mlvae_tf.MLVAE.TERMS)
    np.testing.assert_array_equal(next(iterator)[0], list(pairs)[3][0])  # 3 batches read, the 4th is next

    start, iterator, calls = int(model.optimizer.iterations), iter(pairs), 0
    with pytest.raises(StopIteration):
        while True:
            model.train_function(iterator)
            calls += 1
    assert calls == -(-batches // 3)  # the last execution ran the steps that were left
    assert int(model.optimizer.iterations) == start + batches


@pytest.mark.slow
def test_executions_of_several_xla_steps_end_with_data_of_unknown_length():
    """A dataset of unknown length ends inside an execution: the steps it has batches for run, then
    the epoch ends; batches of varying size fall back to Keras's loop, one step per call."""
    ragged, pairs = _ragged_and_pairs(n=60)
    batches = int(pairs.cardinality())
    unknown = pairs.filter(lambda images, group_ids: True)
    assert int(unknown.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    _, reference_history = _fit_pairs(pairs, 1)
    model, history = _fit_pairs(unknown, 3)
    assert int(model.optimizer.iterations) == 2 * batches
    np.testing.assert_allclose(history["loss"], reference_history["loss"], rtol=1e-6)

    unpadded = mlvae_tf.data.to_pairs(ragged)
    assert not unpadded.element_spec[0].shape.is_fully_defined()
    model, history = _fit_pairs(unpadded, 3, epochs=1)
    assert int(model.optimizer.iterations) == batches and np.isfinite(history["loss"][0])


@pytest.mark.slow
def test_executions_of_several_xla_steps_keep_float16_loss_scaling_and_distributed_input():
    """Under mixed_float16 the loss scale skips a step whose gradients overflow, inside the fused
    program as in Keras's loop; input distributed by a `tf.distribute` strategy keeps Keras's loop."""
    _, pairs = _ragged_and_pairs(n=60)
    batches = int(pairs.cardinality())
    with precision_policy("mixed_float16"):
        one, one_history = _fit_pairs(pairs, 1)
        fused, fused_history = _fit_pairs(pairs, 3)
    assert int(fused.optimizer.iterations) == int(one.optimizer.iterations) < 2 * batches  # a step was skipped
    np.testing.assert_allclose(fused_history["loss"], one_history["loss"], rtol=1e-6)

    _, reference_history = _fit_pairs(pairs, 1)
    keras.utils.set_random_seed(1)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = make_tiny_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-2), jit_compile=True, steps_per_execution=3)
    history = model.fit(pairs, epochs=2, verbose=0).history
    assert int(model.optimizer.iterations.numpy()) == 2 * batches
    np.testing.assert_allclose(history["loss"], reference_history["loss"], rtol=1e-5)
