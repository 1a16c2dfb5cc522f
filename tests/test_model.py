"""MLVAE: gradients, config, save/load, the public API's shapes and invariants, conv64."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM, make_tiny_model


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
    log_var = model.encode(x)["style_log_var"].numpy()
    assert np.all(np.abs(log_var) <= 5.0)  # the paper's 5 * tanh head
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf.data.Dataset.from_tensors(tf.RaggedTensor.from_row_lengths(x, [2, 3]))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.fit(ds, epochs=1, verbose=0)
    assert any(np.any(b != w.numpy()) for b, w in zip(before, model.trainable_weights))


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
    logits = model.decoder([content, style])["logits"].numpy()
    np.testing.assert_allclose(model.decode(content, style), 1 / (1 + np.exp(-logits)), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_keeps_the_grouped_posterior_in_float32(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = make_tiny_model()
        assert model.encoder.get_layer("heads").compute_dtype == policy.removeprefix("mixed_")
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        x = np.random.default_rng(0).uniform(size=(9, *INPUT_SHAPE)).astype(np.float32)
        logs = model.train_step(tf.RaggedTensor.from_row_lengths(x, [4, 1, 4]))
        assert np.isfinite(float(logs["loss"]))
        grp = model.encode_groups(x, [0, 0, 1, 1, 1, 2, 2, 2, 2])
        assert all(v.dtype == tf.float32 for v in grp.values())
        assert all(w.dtype == "float32" for w in model.trainable_weights)  # variables stay float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


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
    eager = model.compute_elbo_terms(*model._unpack(first), noise=noise)["loss"]
    compiled = tf.function(lambda data: model.compute_elbo_terms(*model._unpack(data), noise=noise)["loss"],
                           jit_compile=True)((images, group_ids))
    np.testing.assert_allclose(compiled.numpy(), eager.numpy(), rtol=1e-5)

    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(pairs, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
