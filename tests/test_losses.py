"""The batch loss against a plain NumPy ELBO per group, and the KLs against Monte Carlo."""

import numpy as np
import pytest
import tensorflow as tf

from mlvae_tf import distributions, grouping
from tests.conftest import CONTENT_DIM, STYLE_DIM, make_tiny_model

SIZES = (1, 3, 17)


def _numpy_group_elbo_loss(model, x, group_ids, noise):
    """-(1/G) sum_g ELBO_g for the "mlp" networks, one group at a time, in plain NumPy."""
    e0, heads = model.encoder.get_layer("e0").get_weights(), model.encoder.get_layer("heads").get_weights()
    d0, d1 = model.decoder.get_layer("d0").get_weights(), model.decoder.get_layer("d1").get_weights()
    clip = lambda v: np.clip(v, grouping.LOG_VAR_MIN, grouping.LOG_VAR_MAX)  # noqa: E731
    flat = x.reshape(len(x), -1).astype(np.float64)
    h = np.tanh(flat @ e0[0] + e0[1]) @ heads[0] + heads[1]
    s_mean, s_lv = h[:, :STYLE_DIM], clip(h[:, STYLE_DIM:2 * STYLE_DIM])
    c_mean, c_lv = h[:, 2 * STYLE_DIM:2 * STYLE_DIM + CONTENT_DIM], clip(h[:, 2 * STYLE_DIM + CONTENT_DIM:])
    elbos = []
    for g in range(group_ids.max() + 1):
        idx = np.flatnonzero(group_ids == g)
        if getattr(model, "aggregation", "product") == "product":  # the VAE: groups of one
            precision = np.exp(-c_lv[idx]).sum(0)
            g_mean, g_var = (c_mean[idx] * np.exp(-c_lv[idx])).sum(0) / precision, 1.0 / precision
            content = g_mean + np.sqrt(g_var) * noise["content"][idx]
            kl_content = 0.5 * np.sum(g_var + g_mean**2 - 1.0 - np.log(g_var))
        else:
            member = idx[np.minimum((noise["component"][idx] * len(idx)).astype(int), len(idx) - 1)]
            content = c_mean[member] + np.exp(0.5 * c_lv[member]) * noise["content"][idx]
            log_q = [np.log(np.mean([np.exp(np.sum(-0.5 * (c - c_mean[j]) ** 2 / np.exp(c_lv[j]) - 0.5 * c_lv[j]
                                                      - 0.5 * np.log(2 * np.pi))) for j in idx])) for c in content]
            log_p = np.sum(-0.5 * content**2 - 0.5 * np.log(2 * np.pi), axis=1)
            kl_content = np.mean(np.array(log_q) - log_p)
        style = s_mean[idx] + np.exp(0.5 * s_lv[idx]) * noise["style"][idx]
        out = np.tanh(np.concatenate([content, style], 1) @ d0[0] + d0[1]) @ d1[0] + d1[1]
        target = flat[idx]
        if model.likelihood == "bernoulli":
            log_lik = np.sum(target * out - np.logaddexp(0.0, out), axis=1)
        else:
            if model.likelihood == "normal":
                mean, log_var = out[:, : target.shape[1]], clip(5.0 * np.tanh(out[:, target.shape[1]:]))
            else:
                mean, log_var = out, np.full_like(out, 2 * np.log(model.observation_scale))
            log_lik = np.sum(-0.5 * (target - mean) ** 2 / np.exp(log_var) - 0.5 * log_var - 0.5 * np.log(2 * np.pi), 1)
        kl_style = 0.5 * np.sum(np.exp(s_lv[idx]) + s_mean[idx] ** 2 - 1.0 - s_lv[idx], axis=1)
        elbos.append(np.sum(log_lik) - model.kl_style_weight * np.sum(kl_style) - model.kl_content_weight * kl_content)
    return -np.mean(elbos)


@pytest.mark.parametrize(
    "likelihood, aggregation",
    [("bernoulli", "product"), ("normal", "product"), ("normal_fixed", "product"), ("bernoulli", "mixture")],
)
@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.0, 0.5)], ids=["elbo", "weighted"])
def test_batch_loss_equals_numpy_average_group_elbo(likelihood, aggregation, weights):
    rng = np.random.default_rng(0)
    group_ids = np.repeat(np.arange(len(SIZES)), SIZES).astype(np.int32)
    perm = rng.permutation(len(group_ids))  # groups interleaved in the flat batch
    group_ids = group_ids[perm]
    n = len(group_ids)
    x = rng.uniform(size=(n, 8, 8, 1)).astype(np.float32)
    noise = {"content": rng.normal(size=(n, CONTENT_DIM)).astype(np.float32),
             "style": rng.normal(size=(n, STYLE_DIM)).astype(np.float32),
             "component": rng.uniform(size=n).astype(np.float32)}
    model = make_tiny_model(likelihood=likelihood, aggregation=aggregation, observation_scale=0.7,
                            kl_style_weight=weights[0], kl_content_weight=weights[1])
    terms = model.compute_elbo_terms(tf.constant(x), tf.constant(group_ids), len(SIZES), noise=noise)
    expected = _numpy_group_elbo_loss(model, x, group_ids, noise)
    np.testing.assert_allclose(terms["loss"].numpy(), expected, rtol=2e-5)
    total = terms["reconstruction"] + weights[0] * terms["kl_style"] + weights[1] * terms["kl_content"]
    np.testing.assert_allclose(total.numpy(), terms["loss"].numpy(), rtol=1e-6)


def test_ragged_batch_and_pair_batch_unpack_to_the_same_flat_groups():
    model = make_tiny_model()
    x = np.arange(7 * 64, dtype=np.float32).reshape(7, 8, 8, 1)
    ragged = tf.RaggedTensor.from_row_lengths(x, [1, 4, 2])
    images, group_ids, num_groups, segments = model._unpack(ragged)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(group_ids, [0, 1, 1, 1, 1, 2, 2])
    assert int(num_groups) == int(segments) == 3
    images, pair_ids, num_groups, segments = model._unpack((x, np.array([0, 1, 1, 1, 1, 2, 2])))
    np.testing.assert_array_equal(pair_ids, group_ids)
    assert int(num_groups) == 3 and int(segments) == 7  # the batch size: never a value of the data


def test_closed_form_kl_equals_monte_carlo():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 4)).astype(np.float32)
    log_var = rng.normal(size=(3, 4)).astype(np.float32) * 0.7
    kl = distributions.kl_standard_normal(mean, log_var).numpy()
    samples = mean + np.exp(0.5 * log_var) * rng.normal(size=(200_000, 3, 4))
    log_q = np.sum(-0.5 * (samples - mean) ** 2 / np.exp(log_var) - 0.5 * log_var, -1)
    log_p = np.sum(-0.5 * samples**2, -1)
    estimate = log_q - log_p
    stderr = estimate.std(0) / np.sqrt(len(estimate))
    assert np.all(np.abs(estimate.mean(0) - kl) < 4 * stderr + 1e-4), (estimate.mean(0), kl)


def _mixture_kl_estimates(mean, log_var, replicas, rng):
    """Replicates one group `replicas` times and returns the estimator's value for each."""
    size = len(mean)
    group_ids = np.repeat(np.arange(replicas), size).astype(np.int32)
    mean_all = np.tile(mean, (replicas, 1)).astype(np.float32)
    log_var_all = np.tile(log_var, (replicas, 1)).astype(np.float32)
    member = grouping.sample_mixture_components(group_ids, replicas, rng.uniform(size=len(group_ids)).astype(np.float32))
    samples = distributions.reparameterize(tf.gather(mean_all, member), tf.gather(log_var_all, member),
                                           rng.normal(size=mean_all.shape).astype(np.float32))
    return distributions.mixture_kl_standard_normal(samples, mean_all, log_var_all, group_ids, replicas).numpy()


def test_mixture_kl_estimator_is_unbiased_for_identical_components():
    """Identical components: the mixture is that Normal, whose KL has a closed form."""
    rng = np.random.default_rng(2)
    mean, log_var = np.tile([[0.8, -0.3]], (4, 1)), np.tile([[-0.5, 0.4]], (4, 1))
    estimates = _mixture_kl_estimates(mean, log_var, 20000, rng)
    var = np.exp(log_var[0])
    exact = 0.5 * np.sum(var + mean[0] ** 2 - 1.0 - log_var[0])  # KL(N(m, v) || N(0, 1)) in closed form
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates))


def test_mixture_kl_estimator_is_unbiased_against_1d_integration():
    rng = np.random.default_rng(3)
    mean, var = np.array([[-1.5], [0.5], [2.0]]), np.array([[0.3], [1.0], [0.6]])
    grid = np.linspace(-15, 15, 300001)
    mixture = np.mean([np.exp(-0.5 * (grid - m) ** 2 / v) / np.sqrt(2 * np.pi * v) for m, v in zip(mean[:, 0], var[:, 0])], 0)
    prior = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    safe = mixture > 1e-300
    exact = np.trapezoid(np.where(safe, mixture * np.log(np.where(safe, mixture, 1.0) / prior), 0.0), grid)
    estimates = _mixture_kl_estimates(mean, np.log(var), 30000, rng)
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates)), (estimates.mean(), exact)


def _set_content_log_var_heads(model, value):
    """Makes the "mlp" encoder's content log-variance head output `value` for every image."""
    kernel, bias = model.encoder.get_layer("heads").get_weights()
    columns = slice(2 * STYLE_DIM + CONTENT_DIM, None)
    kernel[:, columns], bias[columns] = 0.0, value
    model.encoder.get_layer("heads").set_weights([kernel, bias])


def test_gradients_reach_log_variance_heads_outside_the_clamp():
    """A head below LOG_VAR_MIN still gets the KL's gradient (a plain clip would give it 0) and it
    points back into the range."""
    model = make_tiny_model()
    _set_content_log_var_heads(model, grouping.LOG_VAR_MIN - 5.0)
    x = np.random.default_rng(0).uniform(size=(6, *model.input_shape)).astype(np.float32)
    with tf.GradientTape() as tape:
        terms = model.compute_elbo_terms(x, tf.constant([0, 0, 1, 1, 1, 2]), 3, training=True)
    bias = model.encoder.get_layer("heads").bias
    gradient = tape.gradient(terms["kl_content"], bias).numpy()[2 * STYLE_DIM + CONTENT_DIM:]
    assert np.all(gradient < 0)  # gradient descent raises the log-variance
    assert np.all(np.isfinite(terms["loss"]))


def test_the_loss_uses_the_group_posterior_of_encode_groups():
    """A group of 10 at log-variance -9 has a group log-variance of -9 - log 10, below the clamp:
    the content KL of the loss is the closed form at encode_groups' posterior, not at -10."""
    model = make_tiny_model()
    _set_content_log_var_heads(model, -9.0)
    x = np.random.default_rng(1).uniform(size=(13, *model.input_shape)).astype(np.float32)
    group_ids = np.array([0] * 10 + [1] * 3, np.int32)
    groups = model.encode_groups(x, group_ids)
    mean, log_var = groups["content_mean"].numpy(), groups["content_log_var"].numpy()
    np.testing.assert_allclose(log_var[0], -9.0 - np.log(10.0), rtol=1e-5)
    kl = 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=1)  # [2]
    terms = model.compute_elbo_terms(x, tf.constant(group_ids), 2)
    np.testing.assert_allclose(terms["kl_content"], kl.mean(), rtol=1e-5)
    # The sampled content: zero noise gives the group mean, unit noise the group's standard deviation.
    zeros = {"content": np.zeros((13, CONTENT_DIM), np.float32), "style": np.zeros((13, STYLE_DIM), np.float32)}
    ones = dict(zeros, content=np.ones((13, CONTENT_DIM), np.float32))
    captured = []
    decode = model._decode
    model._decode = lambda content, style, **kw: captured.append(content.numpy()) or decode(content, style, **kw)
    model.compute_elbo_terms(x, tf.constant(group_ids), 2, noise=zeros)
    model.compute_elbo_terms(x, tf.constant(group_ids), 2, noise=ones)
    np.testing.assert_allclose(captured[1] - captured[0], np.exp(0.5 * log_var)[group_ids], rtol=1e-4)


@pytest.mark.parametrize("head", [-1e4, 1e4])
def test_groups_of_1_and_10000_give_finite_losses_and_gradients_at_extreme_heads(head):
    model = make_tiny_model()
    _set_content_log_var_heads(model, head)
    x = np.random.default_rng(2).uniform(size=(10_001, *model.input_shape)).astype(np.float32)
    group_ids = tf.constant(np.r_[np.zeros(10_000), 1].astype(np.int32))
    with tf.GradientTape() as tape:
        terms = model.compute_elbo_terms(x, group_ids, 2, training=True)
    gradients = tape.gradient(terms["loss"], model.trainable_weights)
    assert all(np.isfinite(value) for value in terms.values())
    assert all(np.all(np.isfinite(g)) for g in gradients)
    log_var = model.encode_groups(x, group_ids)["content_log_var"].numpy()
    bound = grouping.LOG_VAR_MIN if head < 0 else grouping.LOG_VAR_MAX
    np.testing.assert_allclose(log_var[:, 0], [bound - np.log(10_000), bound], atol=1e-3)  # float32 sums
