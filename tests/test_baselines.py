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


def _svi(x, labels, **kwargs):
    return mlvae_tf.SVI.for_data(x, labels, **dict(TINY, inference_steps=40, **kwargs))


def test_svi_training_loss_is_the_numpy_group_elbo_of_its_tables():
    rng = np.random.default_rng(4)
    x, labels = random_images(9, seed=4), np.array(["a", "b", "a", "c", "b", "a", "c", "c", "c"])
    model = _svi(x, labels)
    for weight in (model.content_mean, model.style_mean):  # away from the initial values
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    batch = [5, 0, 8, 3, 6]  # two batch groups: "a" (rows 5, 0) and a chunk of "c" (rows 8, 3, 6)
    group_ids = np.array([0, 0, 1, 1, 1], np.int32)
    noise = {"content": rng.normal(size=(5, CONTENT_DIM)).astype(np.float32),
             "style": rng.normal(size=(5, STYLE_DIM)).astype(np.float32)}
    terms = model.compute_elbo_terms(tf.constant(x[batch]), tf.constant(group_ids), 2, training=True, noise=noise)
    tables = {w.name: w.numpy().astype(np.float64) for w in (model.content_mean, model.content_log_var,
                                                              model.style_mean, model.style_log_var)}
    d0, d1 = model.decoder.get_layer("d0").get_weights(), model.decoder.get_layer("d1").get_weights()
    content_row = {0: 0, 1: 2}  # group_index sorts the labels: a -> 0, b -> 1, c -> 2
    elbos = []
    for g in (0, 1):
        members = np.flatnonzero(group_ids == g)
        m, lv = tables["content_mean"][content_row[g]], tables["content_log_var"][content_row[g]]
        content = m + np.exp(0.5 * lv) * noise["content"][members]
        rows = np.array(batch)[members]
        s_m, s_lv = tables["style_mean"][rows], tables["style_log_var"][rows]
        style = s_m + np.exp(0.5 * s_lv) * noise["style"][members]
        logits = np.tanh(np.concatenate([content, style], 1) @ d0[0] + d0[1]) @ d1[0] + d1[1]
        target = x[rows].reshape(len(rows), -1)
        log_lik = np.sum(target * logits - np.logaddexp(0.0, logits))
        kl_style = 0.5 * np.sum(np.exp(s_lv) + s_m**2 - 1.0 - s_lv)
        kl_content = 0.5 * np.sum(np.exp(lv) + m**2 - 1.0 - lv)
        elbos.append(log_lik - kl_style - kl_content)
    np.testing.assert_allclose(terms["loss"].numpy(), -np.mean(elbos), rtol=1e-5)


def test_svi_test_time_inference_lowers_its_objective_and_is_what_encode_groups_gives():
    x, labels = random_images(12, seed=5), np.repeat(np.arange(4), 3)
    model = _svi(x, labels)
    unseen, ids = random_images(6, seed=6), np.array([0, 0, 1, 1, 2, 2], np.int32)
    noise = model._draw_noise(6)
    objective = [float(model._terms_of(tf.constant(unseen), tf.constant(ids), 3, model.infer(unseen, ids, 3, steps),
                                       noise)["loss"]) for steps in (1, 10, 60)]
    assert objective[0] > objective[1] > objective[2], objective
    encoded = model.encode_groups(unseen, ids)
    assert encoded["content_mean"].shape == (3, CONTENT_DIM) and encoded["style_mean"].shape == (6, STYLE_DIM)
    assert model.encode(unseen)["content_mean"].shape == (6, CONTENT_DIM)  # each image its own group


def test_svi_refuses_unindexed_training_images_duplicates_xla_and_export(tmp_path):
    from export import ExportError, export_model

    x, labels = random_images(6, seed=7), np.array([0, 0, 1, 1, 2, 2])
    model = _svi(x, labels)
    other = tf.RaggedTensor.from_row_lengths(random_images(4, seed=8), [2, 2])
    model.compile(optimizer="adam")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"SVI trains on the images it was indexed with"):
        model.train_step(other)
    with pytest.raises(ValueError, match="identical images"):
        mlvae_tf.SVI.for_data(np.concatenate([x, x[:1]]), np.append(labels, 0), **TINY)
    with pytest.raises(ValueError, match="`jit_compile=True` is not available to SVI"):
        model.compile(jit_compile=True)
    with pytest.raises(ExportError, match="SVI has no encoder to export"):
        export_model(model, tmp_path, "svi")


def test_svi_round_trips_its_tables_through_a_keras_file(tmp_path):
    x, labels = random_images(6, seed=9), np.array([0, 0, 1, 1, 2, 2])
    model = _svi(x, labels, seed=3)
    model.compile(optimizer="adam")
    model.fit(mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=2, seed=0), epochs=2, verbose=0)
    model.save(tmp_path / "svi.keras")
    loaded = keras.models.load_model(tmp_path / "svi.keras")
    assert loaded.get_config() == model.get_config()
    noise = model._draw_noise(6)
    batch = (tf.constant(x[::-1].copy()), tf.constant([0, 0, 1, 1, 2, 2]))
    expected = model.compute_elbo_terms(*batch, 3, training=True, noise=noise)
    got = loaded.compute_elbo_terms(*batch, 3, training=True, noise=noise)
    np.testing.assert_allclose(got["loss"].numpy(), expected["loss"].numpy(), rtol=1e-6)


def test_compare_trains_the_configs_own_style_option_beside_models_with_the_papers_objective():
    from mlvae_tf.compare import models_for
    from mlvae_tf.config import apply_overrides, load_config

    def trained(config):  # {name: the model section each row is built from}
        return {name: apply_overrides(config, overrides)["model"] for name, overrides in models_for(config).items()}

    # A recommended config's options: its option row, and none of them in any other model.
    own = trained(load_config(None, ["model.group_variance_weight=300", "model.kl_style_weight=3",
                                     "model.likelihood=normal_fixed"]))
    assert list(own) == ["ML-VAE", "ML-VAE, mixture", "ML-VAE, group variance, style KL", "VAE", "Regularised VAE",
                         "SVI"]
    option = own.pop("ML-VAE, group variance, style KL")
    assert (option["group_variance_weight"], option["kl_style_weight"], option["kind"]) == (300.0, 3.0, "mlvae")
    for name, model in own.items():
        assert (model["group_variance_weight"], model["kl_style_weight"]) == (0.0, 1.0), name
    assert {model["likelihood"] for model in [option, *own.values()]} == {"normal_fixed"}  # shared settings kept
    # A config without options: the digits' best, the group variance at 3000.
    plain = trained(load_config(None))
    assert plain["ML-VAE, group variance"]["group_variance_weight"] == 3000.0
    assert plain["ML-VAE"] == load_config(None)["model"]


@pytest.mark.slow
def test_compare_trains_every_model_and_writes_the_table_figure_and_json(tmp_path, capsys):
    import json

    from tests.conftest import run_cli

    out = tmp_path / "compare"
    status, stdout, err = run_cli(capsys, "compare", "--data", "digits", "--epochs", 1, "--trials", 1, "--out", out,
                                  "--set", "model.hidden_units=16", "--set", "model.inference_steps=5",
                                  "--set", "evaluate.K=3", "--set", "evaluate.ks=[1, 3]")
    assert status == 0, err[-2000:]
    report = json.loads((out / "compare.json").read_text())["results"]
    assert list(report) == ["ML-VAE", "ML-VAE, mixture", "ML-VAE, group variance", "VAE", "Regularised VAE", "SVI"]
    for name, result in report.items():
        assert result["training"]["epochs"] == 1 and (out / "models").exists(), name
        assert 0.0 <= result["protocol"]["content_accuracy"]["1"]["mean"] <= 1.0
    # The negative ELBO column leaves out the options' terms: the plain ML-VAE's is its loss.
    plain, option = report["ML-VAE"]["training"], report["ML-VAE, group variance"]["training"]
    np.testing.assert_allclose(plain["val_elbo"], plain["val_loss"], rtol=1e-4)
    assert option["val_elbo"] < option["val_loss"]
    assert report["SVI"]["inference"]["steps"] == 5 and "whole_latent" in report["VAE"]
    assert len(report["Regularised VAE"]["content_kl_per_dimension"]) == 10
    table = (out / "compare.md").read_text().splitlines()
    assert len(table) == 2 + 7  # header, rule, six models and the VAE's whole latent
    row = next(line for line in table if line.startswith("| SVI |"))
    assert f"{report['SVI']['protocol']['content_accuracy']['1']['mean']:.3f}" in row and "5 Adam steps" in row
    for name in ("figure6c.png", "training.png", "svi_swap_grid.png"):
        assert (out / name).stat().st_size > 0
    # Saved models compared as given, without training.
    models = ",".join(str(out / "models" / f) for f in ("mlvae.keras", "vae.keras"))
    status, _, err = run_cli(capsys, "compare", "--models", models, "--trials", 1, "--out", tmp_path / "given",
                             "--set", "evaluate.K=3", "--set", "evaluate.ks=[1, 3]")
    given = json.loads((tmp_path / "given" / "compare.json").read_text())["results"]
    assert status == 0 and list(given) == ["ML-VAE", "VAE"] and "training" not in given["VAE"], err[-2000:]
