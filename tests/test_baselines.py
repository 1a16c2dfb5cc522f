"""The baselines (issue 15): the i.i.d. VAE and the regularised VAE, against NumPy and invariants."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from tests.conftest import CONTENT_DIM, INPUT_SHAPE, STYLE_DIM, random_images
from tests.test_losses import _numpy_group_elbo_loss

TINY = dict(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=17, seed=0)


def _batch(n_groups=(3, 1, 4), seed=0):
    """Images of groups of the given sizes, interleaved in the flat batch, and standard noise."""
    rng = np.random.default_rng(seed)
    group_ids = rng.permutation(np.repeat(np.arange(len(n_groups)), n_groups)).astype(np.int32)
    n = len(group_ids)
    noise = {"content": rng.normal(size=(n, CONTENT_DIM)).astype(np.float32),
             "style": rng.normal(size=(n, STYLE_DIM)).astype(np.float32)}
    return random_images(n, seed=seed), group_ids, noise


def _numpy_symmetrised_kl(m_a, v_a, m_b, v_b):
    kl_ab = 0.5 * np.sum(np.log(v_b / v_a) + (v_a + (m_a - m_b) ** 2) / v_b - 1.0)
    kl_ba = 0.5 * np.sum(np.log(v_a / v_b) + (v_b + (m_a - m_b) ** 2) / v_a - 1.0)
    return 0.5 * (kl_ab + kl_ba)


def _numpy_penalty(model, x, group_ids):
    """Eq. 18's penalty on the per-group scale, by a loop over groups and their pairs in batch order."""
    encoded = {k: v.numpy().astype(np.float64) for k, v in model.encode(x).items()}
    observed = group_ids >= 0
    num_groups = group_ids.max() + 1
    per_group = []
    for g in range(num_groups):
        members = np.flatnonzero(group_ids == g)
        pairs = [(members[i], members[i + 1]) for i in range(0, len(members) - 1, 2)]
        kls = [_numpy_symmetrised_kl(encoded["content_mean"][a], np.exp(encoded["content_log_var"][a]),
                                     encoded["content_mean"][b], np.exp(encoded["content_log_var"][b]))
               for a, b in pairs]
        per_group.append(np.mean(kls) if kls else 0.0)
    return model.penalty_weight * observed.sum() / num_groups**2 * np.sum(per_group)


@pytest.mark.parametrize("likelihood", ["bernoulli", "normal"])
def test_vae_loss_is_the_numpy_elbo_of_every_observation_per_group(likelihood):
    x, group_ids, noise = _batch()
    model = mlvae_tf.VAE(likelihood=likelihood, kl_style_weight=2.0, kl_content_weight=0.5, **TINY)
    terms = model.compute_elbo_terms(tf.constant(x), tf.constant(group_ids), 3, noise=noise)
    singletons = np.arange(len(x), dtype=np.int32)  # the ML-VAE's NumPy ELBO with groups of one
    expected = _numpy_group_elbo_loss(model, x, singletons, noise) * len(x) / 3  # per group of the batch
    np.testing.assert_allclose(terms["loss"].numpy(), expected, rtol=2e-5)
    # The groups do not matter to the VAE, only their number.
    shuffled = model.compute_elbo_terms(tf.constant(x), tf.constant(group_ids[::-1].copy()), 3, noise=noise)
    np.testing.assert_allclose(shuffled["loss"].numpy(), terms["loss"].numpy(), rtol=1e-6)


def test_regularised_penalty_equals_numpy_pairs_and_the_loss_adds_it():
    x, group_ids, noise = _batch((3, 1, 4, 2))  # odd, single, even and pair-sized groups
    model = mlvae_tf.RegularisedVAE(penalty_weight=0.7, **TINY)
    terms = model.compute_elbo_terms(tf.constant(x), tf.constant(group_ids), 4, noise=noise)
    np.testing.assert_allclose(terms["penalty"].numpy(), _numpy_penalty(model, x, group_ids), rtol=1e-5)
    vae = mlvae_tf.VAE(**TINY)
    vae.set_weights(model.get_weights())
    plain = vae.compute_elbo_terms(tf.constant(x), tf.constant(group_ids), 4, noise=noise)
    np.testing.assert_allclose(terms["loss"].numpy(), plain["loss"].numpy() + terms["penalty"].numpy(), rtol=1e-6)
    # Padding rows (the pair form) pair with nothing and count as no observation.
    padded = model.compute_elbo_terms(tf.constant(np.concatenate([x, np.zeros_like(x[:3])])),
                                      tf.constant(np.concatenate([group_ids, [-1, -1, -1]]).astype(np.int32)), 4,
                                      noise={k: np.concatenate([v, np.zeros_like(v[:3])]) for k, v in noise.items()},
                                      num_segments=len(x) + 3)
    for name in model.TERMS:
        np.testing.assert_allclose(padded[name].numpy(), terms[name].numpy(), rtol=1e-5, err_msg=name)


def test_regularised_penalty_is_zero_for_identical_posteriors_and_symmetric():
    model = mlvae_tf.RegularisedVAE(penalty_weight=3.0, **TINY)
    image = random_images(2)
    same = np.concatenate([np.repeat(image[:1], 4, 0), np.repeat(image[1:], 2, 0)])  # groups of identical images
    ids = tf.constant([0, 0, 0, 0, 1, 1])
    assert float(model.compute_elbo_terms(tf.constant(same), ids, 2)["penalty"]) == 0.0
    x = random_images(4, seed=3)
    forward = model.compute_elbo_terms(tf.constant(x), tf.constant([0, 0, 1, 1]), 2)["penalty"]
    swapped = model.compute_elbo_terms(tf.constant(x[[1, 0, 3, 2]]), tf.constant([0, 0, 1, 1]), 2)["penalty"]
    assert float(forward) > 0.0
    np.testing.assert_allclose(float(swapped), float(forward), rtol=1e-6)


@pytest.mark.parametrize("cls", [mlvae_tf.VAE, mlvae_tf.RegularisedVAE])
def test_baselines_round_trip_their_config_and_a_keras_file(cls, tmp_path):
    model = cls(likelihood="normal_fixed", observation_scale=0.3, **TINY)
    config = model.get_config()
    assert cls.from_config(config).get_config() == config
    x = random_images(5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is cls and loaded.get_config() == config
    for key, value in model.encode(x).items():
        np.testing.assert_allclose(loaded.encode(x)[key], value, atol=1e-6)


@pytest.mark.parametrize("cls", [mlvae_tf.VAE, mlvae_tf.RegularisedVAE])
def test_baselines_train_on_ragged_batches_and_on_the_xla_pair_path_alike(cls):
    x, labels = random_images(30, seed=1), np.repeat(np.arange(6), 5)
    ragged = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=3, max_group_size=4, shuffle=False)
    pairs = mlvae_tf.data.to_pairs(ragged, pad_to=mlvae_tf.data.largest_batch(labels, 3, 4))
    model = cls(**TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batch = next(iter(ragged))
    images, group_ids = next(iter(pairs))
    noise = {k: tf.constant(v) for k, v in _batch((1,) * int(images.shape[0]))[2].items()}
    flat = {k: v[: int(batch.flat_values.shape[0])] for k, v in noise.items()}
    expected = model.compute_elbo_terms(batch.flat_values, tf.cast(batch.value_rowids(), tf.int32), 3, noise=flat)
    step = tf.function(lambda: model.compute_elbo_terms(images, group_ids, 3, noise=noise,
                                                        num_segments=int(images.shape[0])), jit_compile=True)
    for name, value in step().items():
        np.testing.assert_allclose(value.numpy(), expected[name].numpy(), rtol=1e-5, err_msg=name)
    history = model.fit(ragged, epochs=2, verbose=0).history
    assert set(history) == set(cls.TERMS) and np.all(np.isfinite(history["loss"]))
