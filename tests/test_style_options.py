"""The options that keep class information out of the style (one content sample per group, the
reverse cycle, the critic, the HSIC, the group variance): each term against an independent
computation, and each exactly the paper's model when off."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import (CONTENT_DIM, STYLE_DIM, make_tiny_model, numpy_critic_pairs, numpy_group_variance,
                            numpy_hsic, random_images)

X = random_images(10, seed=2)
IDS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3], np.int32)


def _noise(n, cycle=False, seed=0):
    rng = np.random.default_rng(seed)
    noise = {"content": tf.constant(rng.normal(size=(n, CONTENT_DIM)), tf.float32),
             "style": tf.constant(rng.normal(size=(n, STYLE_DIM)), tf.float32)}
    if cycle:
        noise["cycle_style"] = tf.constant(rng.normal(size=(n, STYLE_DIM)), tf.float32)
    return noise


def _loss_and_gradients(model, noise):
    with tf.GradientTape() as tape:
        terms = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, training=True, noise=noise)
    return terms, tape.gradient(terms["loss"], model.trainable_weights)


@pytest.mark.parametrize("kwargs", [dict(cycle_weight=0.0), dict(content_samples="observation"), dict(critic_weight=0.0),
                                    dict(independence_weight=0.0), dict(group_variance_weight=0.0)])
def test_an_option_that_is_off_is_the_papers_model(kwargs):
    plain, option = make_tiny_model(), make_tiny_model(**kwargs)
    option.set_weights(plain.get_weights())
    noise = _noise(len(X))
    (expected, expected_gradients), (got, gradients) = _loss_and_gradients(plain, noise), _loss_and_gradients(option, noise)
    assert set(got) == set(expected)  # no extra term logged
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-6)
    for a, b in zip(gradients, expected_gradients):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_the_reverse_cycle_term_is_the_l1_distance_of_the_re_encoded_styles():
    model = make_tiny_model(cycle_weight=2.0)
    noise = _noise(len(X), cycle=True)
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=noise)
    # NumPy, from the public API: group means, decoded means, re-encoded style means.
    groups = np.asarray(model.encode_groups(X, IDS)["content_mean"])  # [4, d]
    style = noise["cycle_style"].numpy()
    first = np.asarray(model.decode(groups[IDS], style))
    second = np.asarray(model.decode(groups[(IDS + 1) % 4], style))
    distance = np.abs(np.asarray(model.encode(first)["style_mean"]) - np.asarray(model.encode(second)["style_mean"]))
    expected = distance.sum() / 4
    np.testing.assert_allclose(terms["cycle"], expected, rtol=1e-5)
    plain = make_tiny_model()
    plain.set_weights(model.get_weights())
    elbo = plain.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=noise)["loss"]
    np.testing.assert_allclose(terms["loss"], elbo + 2.0 * expected, rtol=1e-5)


def test_the_reverse_cycle_reaches_the_encoder_only():
    model = make_tiny_model(cycle_weight=1.0)
    noise = _noise(len(X), cycle=True)
    with tf.GradientTape() as tape:
        cycle = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, training=True, noise=noise)["cycle"]
    decoder, encoder = model.decoder.trainable_weights, model.encoder.trainable_weights
    gradients = tape.gradient(cycle, decoder + encoder)
    assert all(g is None for g in gradients[: len(decoder)])
    assert all(g is not None for g in gradients[len(decoder):]) and sum(np.abs(g).sum() for g in gradients[len(decoder):]) > 0


def test_the_critic_term_is_its_cross_entropy_on_the_batchs_pairs():
    model = make_tiny_model(critic_weight=3.0)
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=_noise(len(X)))
    style = np.asarray(model.encode(X)["style_mean"])
    losses = []
    for a, b in numpy_critic_pairs(IDS):
        keep = a != b
        features = np.concatenate([np.abs(style[a] - style[b]), style[a] * style[b]], axis=1)[keep]
        logits = np.asarray(model.critic(features))[:, 0]
        labels = (IDS[a] == IDS[b])[keep].astype(np.float64)
        losses.append(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
    expected = np.concatenate(losses).mean()
    np.testing.assert_allclose(terms["critic"], expected, rtol=1e-5)
    plain = make_tiny_model()
    plain.set_weights(model.get_weights()[: len(plain.get_weights())])
    elbo = plain.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=_noise(len(X)))["loss"]
    np.testing.assert_allclose(terms["loss"], elbo + len(X) / 4 * expected, rtol=1e-5)


def test_the_critic_learns_and_the_encoder_gets_its_gradient_reversed():
    model = make_tiny_model(critic_weight=3.0)
    weights = model.encoder.trainable_weights + model.critic.trainable_weights
    with tf.GradientTape() as tape:
        critic = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=_noise(len(X)))["critic"]
    reversed_gradients = tape.gradient(critic, weights)
    with tf.GradientTape() as tape:  # the same cross-entropy, no reversal
        direct = model._critic_cross_entropy(model._encode(tf.constant(X))["style_mean"], tf.constant(IDS), 4)
    gradients = tape.gradient(direct, weights)
    encoder = len(model.encoder.trainable_weights)
    for got, expected in zip(reversed_gradients[:encoder], gradients[:encoder]):
        np.testing.assert_allclose(got, -3.0 * np.asarray(expected), rtol=1e-4, atol=1e-7)
    for got, expected in zip(reversed_gradients[encoder:], gradients[encoder:]):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_the_independence_term_is_the_hsic_of_the_style_means_and_the_groups():
    from mlvae_tf.losses import group_dependence

    rng = np.random.default_rng(1)
    features = rng.normal(size=(9, 3)).astype(np.float32)
    ids = np.array([0, 0, 1, 1, 1, 2, -1, 2, -1], np.int32)  # two padding rows
    np.testing.assert_allclose(group_dependence(features, ids, 1.5), numpy_hsic(features, ids, 1.5), rtol=1e-5)
    np.testing.assert_allclose(group_dependence(features, ids), numpy_hsic(features, ids), rtol=1e-5)
    # Its own scale: the same for features 100 times larger, where a fixed width sees no pair close.
    np.testing.assert_allclose(group_dependence(100 * features, ids), numpy_hsic(features, ids), rtol=1e-4)
    same = np.repeat(rng.normal(size=(1, 3)), 9, axis=0).astype(np.float32)  # one point for every group: independent
    np.testing.assert_allclose(group_dependence(same, ids, 1.5), 0.0, atol=1e-7)
    _check_dependence_term("independence", numpy_hsic)


def _check_dependence_term(term, numpy_measure, weight=4.0):
    """The model's `term` is `numpy_measure` of its style means and the groups, added to the ELBO
    times the weight and the observations per group."""
    model = make_tiny_model(**{f"{term}_weight": weight})
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=_noise(len(X)))
    expected = numpy_measure(np.asarray(model.encode(X)["style_mean"]), IDS)
    np.testing.assert_allclose(terms[term], expected, rtol=1e-4)
    plain = make_tiny_model()
    plain.set_weights(model.get_weights())
    elbo = plain.compute_elbo_terms(tf.constant(X), tf.constant(IDS), 4, noise=_noise(len(X)))["loss"]
    np.testing.assert_allclose(terms["loss"], elbo + weight * len(X) / 4 * expected, rtol=1e-5)


def test_the_group_variance_term_is_pillais_trace_of_the_style_means_and_the_groups():
    from mlvae_tf.losses import group_variance

    rng = np.random.default_rng(3)
    features = rng.normal(size=(11, 3)).astype(np.float32)
    ids = np.array([0, 0, 1, 1, 1, 2, -1, 2, 2, -1, 0], np.int32)  # two padding rows
    np.testing.assert_allclose(group_variance(features, ids), numpy_group_variance(features, ids), rtol=1e-4)
    # What a linear classifier reads does not change with any invertible linear map of the features.
    mixed = features @ rng.normal(size=(3, 3)).astype(np.float32) * 50 + 7
    np.testing.assert_allclose(group_variance(mixed, ids, ridge=0.0), numpy_group_variance(features, ids, 0.0), rtol=1e-3)
    # Every group at the same mean: 0; every row at its group's mean: all of the variance (1).
    spread = rng.normal(size=(4, 3))
    alike = np.stack([spread, -spread], axis=1).reshape(8, 3).astype(np.float32)  # groups (v, -v): mean 0
    np.testing.assert_allclose(group_variance(alike, np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)), 0.0, atol=1e-6)
    constant = np.repeat(rng.normal(size=(4, 3)), 3, axis=0).astype(np.float32)
    np.testing.assert_allclose(group_variance(constant, np.repeat(np.arange(4, dtype=np.int32), 3), ridge=0.0), 1.0, rtol=1e-4)
    _check_dependence_term("group_variance", numpy_group_variance, weight=5.0)


def test_one_content_sample_per_group_is_shared_by_its_members():
    model = make_tiny_model(content_samples="group")
    encoded = model.encode(X)
    noise = _noise(len(X))["content"]
    content, _ = model._content(encoded["content_mean"], encoded["content_log_var"], tf.constant(IDS), 4, noise)
    groups = model.encode_groups(X, IDS)
    expected = groups["content_mean"] + np.exp(0.5 * np.asarray(groups["content_log_var"])) * noise.numpy()[:4]
    np.testing.assert_allclose(content, np.asarray(expected)[IDS], rtol=1e-5, atol=1e-6)


def test_the_options_train_log_their_term_and_are_kept_in_the_config(tmp_path):
    options = dict(content_samples="group", cycle_weight=0.5, critic_weight=1.0, independence_weight=2.0,
                   group_variance_weight=0.5)
    model = make_tiny_model(**options)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(mlvae_tf.data.grouped_dataset(X, IDS, groups_per_batch=2, seed=0), epochs=2, verbose=0).history
    assert "cycle" in history and np.isfinite(history["cycle"]).all() and history["cycle"][0] > 0
    assert 0 < history["critic"][0] < 5 and 0 < history["independence"][0] < 1 and 0 < history["group_variance"][0] < 1
    pairs = mlvae_tf.data.to_pairs(mlvae_tf.data.grouped_dataset(X, IDS, groups_per_batch=2, seed=0), pad_to=8)
    xla = make_tiny_model(**options)
    xla.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=2)
    xla_history = xla.fit(pairs, epochs=1, verbose=0).history  # the fused XLA path
    assert all(np.isfinite(xla_history[term]).all() for term in ("cycle", "critic", "independence", "group_variance"))
    model.save(tmp_path / "m.keras")
    loaded = mlvae_tf.files.load_model(tmp_path / "m.keras")
    assert {name: getattr(loaded, name) for name in options} == options
    np.testing.assert_allclose(loaded.critic.get_weights()[0], model.critic.get_weights()[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(cycle_weight=-1.0), "`cycle_weight` must be a number >= 0"),
    (dict(critic_weight="1"), "`critic_weight` must be a number >= 0"),
    (dict(independence_weight=-2), "`independence_weight` must be a number >= 0"),
    (dict(group_variance_weight=float("nan")), "`group_variance_weight` must be a number >= 0"),
    (dict(content_samples="batch"), "`content_samples` must be one of"),
    (dict(content_samples="group", aggregation="mixture"), "`content_samples='group'` needs aggregation='product'"),
])
def test_bad_option_values_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_tiny_model(**kwargs)
