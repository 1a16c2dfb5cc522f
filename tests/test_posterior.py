"""The incremental group posterior against `encode_groups` on the whole group at once."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlvae_tf
from mlvae_tf.posterior import GroupPosterior, posterior, statistics
from tests.conftest import make_tiny_model, random_images

POOL = random_images(9, seed=3)  # the observations a group can receive


@pytest.fixture(scope="module", params=["product", "mixture"])
def model(request):
    model = make_tiny_model(aggregation=request.param)
    model.encode(POOL[:1])
    return model


def _whole_group(model, images):
    """`encode_groups` on the whole group at once: `(mean, log_var)` `[content_dim]` each."""
    if len(images) == 0:
        return np.zeros(model.content_dim), np.zeros(model.content_dim)  # the prior N(0, I)
    out = model.encode_groups(images, np.zeros(len(images), np.int32))
    return np.asarray(out["content_mean"])[0], np.asarray(out["content_log_var"])[0]


def test_updates_in_any_batches_equal_the_whole_group(model):
    gp = GroupPosterior(model).update(POOL[:2]).update(POOL[2:3]).update(POOL[3:])
    mean, log_var = _whole_group(model, POOL)
    assert gp.count == 9
    np.testing.assert_allclose(gp.mean, mean, atol=1e-5)
    np.testing.assert_allclose(gp.log_var, log_var, atol=1e-5)


# Each operation: add or remove a sub-multiset of the pool (a removal takes only what the group holds).
OPERATIONS = st.lists(st.tuples(st.booleans(), st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=4)),
                      min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_the_incremental_posterior_equals_the_batch_posterior_after_any_updates_and_removals(model, operations):
    gp, held = GroupPosterior(model), []
    for add, indices in operations:
        if add:
            gp.update(POOL[indices])
            held += indices
        else:
            present = []  # the part of `indices` the group holds, duplicates counted
            for i in indices:
                if i in held:
                    held.remove(i)
                    present.append(i)
            if present:
                gp.remove(POOL[present])
        mean, log_var = _whole_group(model, POOL[sorted(held)])
        assert gp.count == len(held)
        np.testing.assert_allclose(gp.mean, mean, atol=1e-5)
        np.testing.assert_allclose(gp.log_var, log_var, atol=1e-5)


def test_the_numpy_functions_on_the_encoders_outputs_match_encode_groups(model):
    """What a client runs on the exported encoder's outputs: statistics add up, posterior reads them."""
    out = model.encode(POOL)
    stats = statistics(out["content_mean"][:4], out["content_log_var"][:4]) + statistics(
        out["content_mean"][4:], out["content_log_var"][4:])
    np.testing.assert_allclose(stats, statistics(out["content_mean"], out["content_log_var"]), rtol=1e-12)
    mean, log_var = posterior(stats, model.aggregation)
    expected = _whole_group(model, POOL)
    np.testing.assert_allclose(mean, expected[0], atol=1e-5)
    np.testing.assert_allclose(log_var, expected[1], atol=1e-5)


def test_the_product_statistics_are_the_natural_parameters():
    """Closed form on two observations in one dimension: precisions 1/var add up, and so do mean/var."""
    mean, log_var = np.array([[1.0], [3.0]]), np.log(np.array([[0.5], [2.0]]))
    stats = statistics(mean, log_var)
    np.testing.assert_allclose(stats[:, 0], [2, 1 / 0.5 + 1 / 2.0, 1 / 0.5 + 3 / 2.0, 4.0, 0.5 + 1 + 2 + 9])
    group_mean, group_log_var = posterior(stats)
    np.testing.assert_allclose(group_mean, [(2 + 1.5) / 2.5], rtol=1e-6)
    np.testing.assert_allclose(group_log_var, [-np.log(2.5)], rtol=1e-6)
    mixture_mean, mixture_log_var = posterior(stats, "mixture")
    np.testing.assert_allclose(mixture_mean, [2.0])
    np.testing.assert_allclose(mixture_log_var, [np.log(12.5 / 2 - 4)], rtol=1e-6)


def test_bad_use_is_refused(model):
    gp = GroupPosterior(model).update(POOL[:2])
    with pytest.raises(ValueError, match="cannot remove 3 observations from a group of 2"):
        gp.remove(POOL[:3])
    with pytest.raises(ValueError, match="`images` must have shape"):
        gp.update(POOL[:, :4])
    with pytest.raises(ValueError, match="`model` must be an MLVAE"):
        GroupPosterior(mlvae_tf.VAE(input_shape=(8, 8, 1), content_dim=2, style_dim=2, hidden_units=3))
    with pytest.raises(ValueError, match="`content_mean` and `content_log_var` must both have shape"):
        statistics(np.zeros((2, 3)), np.zeros((2, 4)))
    assert gp.remove(POOL[:2]).count == 0
    np.testing.assert_array_equal(gp.mean, np.zeros(model.content_dim))  # back to the prior


def test_the_numpy_clamp_is_the_models():
    assert (mlvae_tf.posterior.LOG_VAR_MIN, mlvae_tf.posterior.LOG_VAR_MAX) == (
        mlvae_tf.grouping.LOG_VAR_MIN, mlvae_tf.grouping.LOG_VAR_MAX)
