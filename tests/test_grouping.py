"""The grouped posterior against numerical integration, closed forms and invariants."""

import numpy as np
import tensorflow as tf

from mlvae_tf import distributions, grouping


def _normal_pdf(x, mean, var):
    return np.exp(-0.5 * (x - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)


def test_product_of_normals_equals_normalised_product_on_1d_grid():
    mean = np.array([[0.3], [-1.2], [2.0]], np.float32)
    log_var = np.log(np.array([[0.5], [2.0], [1.5]], np.float32))
    group_mean, group_log_var = grouping.product_of_normals(mean, log_var, tf.constant([0, 0, 0]), 1)

    grid = np.linspace(-10, 10, 200001)
    density = np.prod([_normal_pdf(grid, m, np.exp(v)) for m, v in zip(mean[:, 0], log_var[:, 0])], axis=0)
    density /= np.trapezoid(density, grid)
    grid_mean = np.trapezoid(grid * density, grid)
    grid_var = np.trapezoid((grid - grid_mean) ** 2 * density, grid)
    np.testing.assert_allclose(group_mean.numpy()[0, 0], grid_mean, atol=1e-5)
    np.testing.assert_allclose(np.exp(group_log_var.numpy()[0, 0]), grid_var, rtol=1e-5)


def test_product_of_normals_equals_normalised_product_on_2d_grid():
    mean = np.array([[0.5, -0.4], [1.0, 0.8]], np.float32)
    var = np.array([[0.7, 1.3], [0.4, 2.2]], np.float32)
    posterior = distributions.group_posterior(mean, np.log(var), tf.constant([0, 0]), 1)

    axis = np.linspace(-6, 6, 601)
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    density = np.ones_like(gx)
    for m, v in zip(mean, var):
        density *= _normal_pdf(gx, m[0], v[0]) * _normal_pdf(gy, m[1], v[1])
    density /= np.trapezoid(np.trapezoid(density, axis, axis=1), axis)
    points = np.stack([gx, gy], -1).reshape(-1, 2).astype(np.float32)
    q = posterior[0].prob(points).numpy().reshape(gx.shape)
    np.testing.assert_allclose(q, density, atol=1e-5 * density.max())


def test_group_of_one_is_its_own_posterior():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(size=(4, 3)).astype(np.float32)
    group_mean, group_log_var = grouping.product_of_normals(mean, log_var, tf.range(4), 4)
    np.testing.assert_allclose(group_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(group_log_var, log_var, rtol=1e-5, atol=1e-6)


def test_duplicating_an_observation_k_times_divides_the_variance_by_k():
    mean = np.array([[0.7, -2.0, 0.1]], np.float32)
    log_var = np.array([[0.3, -1.0, 2.0]], np.float32)
    for k in (2, 5, 17):
        group_mean, group_log_var = grouping.product_of_normals(
            np.repeat(mean, k, 0), np.repeat(log_var, k, 0), tf.zeros(k, tf.int32), 1
        )
        np.testing.assert_allclose(group_mean, mean, rtol=1e-5)
        np.testing.assert_allclose(np.exp(group_log_var), np.exp(log_var) / k, rtol=1e-5)


def test_product_is_invariant_to_permutation_and_matches_numpy_per_group():
    rng = np.random.default_rng(2)
    group_ids = np.array([2, 0, 1, 2, 2, 0, 1, 1, 1], np.int32)
    mean = rng.normal(size=(9, 4)).astype(np.float32)
    log_var = rng.normal(size=(9, 4)).astype(np.float32)
    group_mean, group_log_var = grouping.product_of_normals(mean, log_var, group_ids, 3)
    for g in range(3):
        precision = np.exp(-log_var[group_ids == g]).sum(0)
        np.testing.assert_allclose(group_log_var[g], -np.log(precision), rtol=1e-5, atol=1e-6)
        expected = (mean[group_ids == g] * np.exp(-log_var[group_ids == g])).sum(0) / precision
        np.testing.assert_allclose(group_mean[g], expected, rtol=1e-5, atol=1e-6)
    perm = rng.permutation(9)
    permuted = grouping.product_of_normals(mean[perm], log_var[perm], group_ids[perm], 3)
    np.testing.assert_allclose(permuted[0], group_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(permuted[1], group_log_var, rtol=1e-5, atol=1e-6)


def test_product_is_finite_for_extreme_log_variances_and_large_groups():
    n = 100_000
    mean = np.full((n, 2), 3.0, np.float32)
    log_var = np.tile(np.array([[-1e4, 1e4]], np.float32), (n, 1))
    group_mean, group_log_var = grouping.product_of_normals(mean, log_var, tf.zeros(n, tf.int32), 1)
    assert np.all(np.isfinite(group_mean)) and np.all(np.isfinite(group_log_var))
    np.testing.assert_allclose(group_mean, [[3.0, 3.0]], rtol=1e-2)  # float32 sums of 1e5 terms
    np.testing.assert_allclose(group_log_var, [[grouping.LOG_VAR_MIN - np.log(n), grouping.LOG_VAR_MAX - np.log(n)]],
                               atol=5e-3)
    with tf.GradientTape() as tape:
        m = tf.constant(mean)
        tape.watch(m)
        out = grouping.product_of_normals(m, log_var, tf.zeros(n, tf.int32), 1)[0]
    assert np.all(np.isfinite(tape.gradient(out, m)))


def test_empty_group_gets_the_prior():
    group_mean, group_log_var = grouping.product_of_normals(np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32),
                                                            tf.constant([0, 2]), 3)
    np.testing.assert_array_equal(group_mean[1], 0.0)
    np.testing.assert_array_equal(group_log_var[1], 0.0)


def test_mixture_moments_match_numpy():
    rng = np.random.default_rng(3)
    group_ids = np.array([0, 1, 0, 0, 1], np.int32)
    mean = rng.normal(size=(5, 2)).astype(np.float32)
    var = np.exp(rng.normal(size=(5, 2))).astype(np.float32)
    group_mean, group_log_var = grouping.mixture_of_normals_moments(mean, np.log(var), group_ids, 2)
    for g in range(2):
        m, v = mean[group_ids == g], var[group_ids == g]
        np.testing.assert_allclose(group_mean[g], m.mean(0), rtol=1e-5)
        np.testing.assert_allclose(np.exp(group_log_var[g]), (v + m**2).mean(0) - m.mean(0) ** 2, rtol=1e-4)


def test_mixture_components_are_drawn_uniformly_from_the_own_group():
    group_ids = np.array([1, 0, 1, 2, 1, 0], np.int32)
    uniform = np.random.default_rng(4).uniform(size=(60000, 6)).astype(np.float32)
    members = np.stack([grouping.sample_mixture_components(group_ids, 3, u).numpy() for u in uniform[:300]])
    assert np.all(group_ids[members] == group_ids[None, :])
    tiled = np.tile(group_ids, 10000)
    ids = np.repeat(np.arange(10000), 6) * 3 + tiled  # 30000 groups, each a copy of the 3
    members = grouping.sample_mixture_components(ids, 30000, uniform.reshape(-1)[: ids.size]).numpy() % 6
    counts = np.bincount(members[tiled == 1], minlength=6)[[0, 2, 4]]
    np.testing.assert_allclose(counts / counts.sum(), 1 / 3, atol=0.01)


def test_mixture_log_prob_matches_numpy():
    rng = np.random.default_rng(5)
    group_ids = np.array([0, 1, 0, 1, 1, 2], np.int32)
    mean = rng.normal(size=(6, 3)).astype(np.float32)
    log_var = rng.normal(size=(6, 3)).astype(np.float32) * 0.5
    samples = rng.normal(size=(6, 3)).astype(np.float32)
    got = grouping.mixture_log_prob(samples, mean, log_var, group_ids, 3).numpy()
    for i in range(6):
        members = np.flatnonzero(group_ids == group_ids[i])
        dens = [np.prod(_normal_pdf(samples[i], mean[j], np.exp(log_var[j]))) for j in members]
        np.testing.assert_allclose(got[i], np.log(np.mean(dens)), rtol=1e-5)
