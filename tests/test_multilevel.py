"""Several groupings at once: `MultiLevelVAE`, `multi_grouped_dataset` and the evaluation per latent."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mlvae_tf
from mlvae_tf.data import multi_grouped_dataset
from mlvae_tf.evaluation import latent_factor_accuracy, latent_swap_grid, latents
from tests.conftest import (INPUT_SHAPE, make_tiny_model, numpy_critic_pairs, numpy_group_variance, numpy_hsic,
                            random_images)

DIMS = {"shape": 3, "colour": 2}
X = random_images(12, seed=5)
SHAPES = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1, 2])
COLOURS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2, 2, 0])


def make_model(**kwargs):
    arguments = dict(input_shape=INPUT_SHAPE, content_dims=DIMS, style_dim=2, hidden_units=11, seed=0)
    return mlvae_tf.MultiLevelVAE(**{**arguments, **kwargs})


def _noise(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return {"content": tf.constant(rng.normal(size=(n, model.content_dim)), tf.float32),
            "style": tf.constant(rng.normal(size=(n, model.style_dim)), tf.float32)}


@pytest.mark.parametrize("options", [{}, {"critic_weight": 2.0}])
def test_one_grouping_is_the_ml_vae(options):
    """The same loss and terms on the same batch, weights and noise (with the critic too)."""
    mlvae = make_tiny_model(content_dim=4, style_dim=3, **options)
    multi = mlvae_tf.MultiLevelVAE(input_shape=INPUT_SHAPE, content_dims={"label": 4}, style_dim=3, hidden_units=17,
                                   **options)
    multi.set_weights(mlvae.get_weights())
    ids = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 4], np.int32)
    noise = _noise(mlvae, len(X))
    expected = mlvae.compute_elbo_terms(tf.constant(X), tf.constant(ids), 5, noise=noise)
    got = multi.compute_elbo_terms(tf.constant(X), tf.constant(ids[:, None]), 5, noise=noise)
    for name in ["loss", "reconstruction", "kl_style", "kl_content"] + (["critic"] if options else []):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(got["kl_label"], expected["kl_content"], rtol=1e-6)


def _kl(mean, log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in NumPy."""
    return 0.5 * np.sum(np.exp(log_var) + mean ** 2 - 1.0 - log_var, axis=1)


def test_each_content_kl_counts_once_per_group_of_its_grouping_per_group_of_the_first():
    model = make_model()
    ids = np.stack([SHAPES, COLOURS], axis=1).astype(np.int32)
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(ids), 3, noise=_noise(model, len(X)))
    groups = model.encode_groups(X, {"shape": SHAPES, "colour": COLOURS})
    for name in DIMS:
        expected = _kl(np.asarray(groups[f"{name}_mean"]), np.asarray(groups[f"{name}_log_var"])).sum() / 3
        np.testing.assert_allclose(terms[f"kl_{name}"], expected, rtol=1e-5)
    np.testing.assert_allclose(terms["kl_content"], terms["kl_shape"] + terms["kl_colour"], rtol=1e-6)
    np.testing.assert_allclose(terms["loss"], terms["reconstruction"] + terms["kl_style"] + terms["kl_content"],
                               rtol=1e-6)


def test_encode_groups_is_the_product_of_each_groupings_groups():
    model = make_model()
    groups = model.encode_groups(X, np.stack([SHAPES, COLOURS], axis=1))
    encoded = model.encode(X)
    for name, labels in (("shape", SHAPES), ("colour", COLOURS)):
        a, b = model.content_slices[name]
        mean, log_var = np.asarray(encoded["content_mean"])[:, a:b], np.asarray(encoded["content_log_var"])[:, a:b]
        for g in range(3):
            precision = np.exp(-log_var[labels == g]).sum(0)
            np.testing.assert_allclose(groups[f"{name}_log_var"][g], -np.log(precision), rtol=1e-5)
            np.testing.assert_allclose(groups[f"{name}_mean"][g],
                                       (mean[labels == g] * np.exp(-log_var[labels == g])).sum(0) / precision,
                                       rtol=1e-4, atol=1e-6)


def test_batches_keep_the_first_groupings_groups_whole_and_number_every_grouping_from_zero():
    shapes, colours = np.repeat(np.arange(4), 9), np.tile(np.arange(3), 12)
    x = random_images(36, seed=1)
    ds = multi_grouped_dataset(x, {"shape": shapes, "colour": colours}, groups_per_batch=3, seed=0)
    seen = []
    for images, ids in ds:
        images, ids = images.numpy(), ids.numpy()
        index = [int(np.flatnonzero((x == image).all(axis=(1, 2, 3)))[0]) for image in images]
        seen += index
        for k, labels in enumerate((shapes, colours)):
            column = ids[:, k]
            assert sorted(set(column)) == list(range(column.max() + 1))  # contiguous, none empty
            for a in range(len(index)):  # the same id exactly when the same label
                assert all((column[a] == column[b]) == (labels[index[a]] == labels[index[b]]) for b in range(len(index)))
        assert all(np.sum(shapes == s) == np.sum(shapes[index] == s) for s in set(shapes[index]))  # whole groups
    assert sorted(seen) == list(range(36))  # every observation once per epoch
    with pytest.raises(ValueError, match=r"`groupings\['colour'\]` has length 35"):
        multi_grouped_dataset(x, {"shape": shapes, "colour": colours[:35]})
    with pytest.raises(ValueError, match="`groupings` must be a non-empty dict"):
        multi_grouped_dataset(x, [shapes])


@pytest.mark.parametrize("term, numpy_measure", [("independence", numpy_hsic),
                                                   ("group_variance", numpy_group_variance)])
def test_a_dependence_term_sums_its_measure_of_the_style_means_over_the_groupings(term, numpy_measure):
    model = make_model(**{f"{term}_weight": 3.0})
    ids = np.stack([SHAPES, COLOURS], axis=1).astype(np.int32)
    ids[[4, 9]] = -1  # padding rows: in no grouping
    noise = _noise(model, len(X))
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(ids), 3, noise=noise)
    style = np.asarray(model.encode(X)["style_mean"])
    for k, name in enumerate(DIMS):
        np.testing.assert_allclose(terms[f"{term}_{name}"], numpy_measure(style, ids[:, k]), rtol=1e-4)
    expected = numpy_measure(style, ids[:, 0]) + numpy_measure(style, ids[:, 1])
    np.testing.assert_allclose(terms[term], expected, rtol=1e-4)
    plain = make_model()
    plain.set_weights(model.get_weights())
    elbo = plain.compute_elbo_terms(tf.constant(X), tf.constant(ids), 3, noise=noise)["loss"]
    np.testing.assert_allclose(terms["loss"], elbo + 3.0 * 10 / 3 * expected, rtol=1e-5)  # 10 observed rows
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(multi_grouped_dataset(X, {"shape": SHAPES, "colour": COLOURS}, groups_per_batch=2, seed=0),
                        epochs=2, verbose=0).history
    assert {term, f"{term}_shape", f"{term}_colour"} <= set(history)
    np.testing.assert_allclose(np.add(history[f"{term}_shape"], history[f"{term}_colour"]), history[term], rtol=1e-5)
    assert getattr(mlvae_tf.MultiLevelVAE.from_config(model.get_config()), f"{term}_weight") == 3.0
    with pytest.raises(ValueError, match="`cycle_weight` is not available with several groupings"):
        make_model(cycle_weight=1.0)


def test_the_critic_has_one_output_per_grouping_each_on_its_groupings_pairs(tmp_path):
    """Each `critic_<grouping>` is the critic's cross-entropy, recomputed in NumPy, on the pairs of
    that grouping's column (`numpy_critic_pairs`) with its own output; the loss adds their sum on the
    ELBO's per-group scale, and the critic trains, saves and loads with the model."""
    model = make_model(critic_weight=3.0)
    ids = np.stack([SHAPES, COLOURS], axis=1).astype(np.int32)
    noise = _noise(model, len(X))
    terms = model.compute_elbo_terms(tf.constant(X), tf.constant(ids), 3, noise=noise)
    style = np.asarray(model.encode(X)["style_mean"])
    for k, name in enumerate(DIMS):
        losses = []
        for a, b in numpy_critic_pairs(ids[:, k]):
            keep = a != b
            features = np.concatenate([np.abs(style[a] - style[b]), style[a] * style[b]], axis=1)[keep]
            logits = np.asarray(model.critic(features))[:, k]
            labels = (ids[a, k] == ids[b, k])[keep].astype(np.float64)
            losses.append(np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits))))
        np.testing.assert_allclose(terms[f"critic_{name}"], np.concatenate(losses).mean(), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(terms["critic"], terms["critic_shape"] + terms["critic_colour"], rtol=1e-6)
    plain = make_model()
    plain.set_weights(model.get_weights()[: len(plain.get_weights())])
    elbo = plain.compute_elbo_terms(tf.constant(X), tf.constant(ids), 3, noise=noise)["loss"]
    np.testing.assert_allclose(terms["loss"], elbo + len(X) / 3 * terms["critic"], rtol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(multi_grouped_dataset(X, {"shape": SHAPES, "colour": COLOURS}, groups_per_batch=2, seed=0),
                        epochs=2, verbose=0).history
    np.testing.assert_allclose(np.add(history["critic_shape"], history["critic_colour"]), history["critic"], rtol=1e-5)
    model.save(tmp_path / "critic.keras")
    loaded = keras.saving.load_model(tmp_path / "critic.keras")
    assert loaded.critic_weight == 3.0
    for got, expected in zip(loaded.critic.get_weights(), model.critic.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_fit_logs_each_groupings_kl_and_the_model_saves_and_loads(tmp_path):
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = multi_grouped_dataset(X, {"shape": SHAPES, "colour": COLOURS}, groups_per_batch=2, seed=0)
    history = model.fit(ds, epochs=2, verbose=0).history
    assert {"kl_shape", "kl_colour", "kl_content", "loss"} <= set(history) and np.isfinite(history["loss"]).all()
    np.testing.assert_allclose(np.add(history["kl_shape"], history["kl_colour"]), history["kl_content"], rtol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = mlvae_tf.files.load_model(tmp_path / "m.keras")
    assert loaded.content_dims == DIMS and loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.encode(X)["content_mean"], model.encode(X)["content_mean"], atol=1e-6)


def test_the_style_kl_warmup_weighs_the_style_kl_until_its_last_epoch_then_the_models_weight():
    """`benchmarks.groupings.StyleKLWarmup`: each epoch's loss is its logged terms under that
    epoch's weight (10, then the model's 1.5), and the model keeps its own weight afterwards."""
    from benchmarks.groupings import StyleKLWarmup

    model = make_model(kl_style_weight=1.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = multi_grouped_dataset(X, {"shape": SHAPES, "colour": COLOURS}, groups_per_batch=6, seed=0)  # one batch
    history = model.fit(ds, epochs=3, verbose=0, callbacks=[StyleKLWarmup(2)]).history
    for epoch, weight in enumerate((10.0, 10.0, 1.5)):
        expected = history["reconstruction"][epoch] + weight * history["kl_style"][epoch] + history["kl_content"][epoch]
        np.testing.assert_allclose(history["loss"][epoch], expected, rtol=1e-5)
    assert model.kl_style_weight == 1.5
    shorter = model.fit(ds, epochs=1, verbose=0, callbacks=[StyleKLWarmup(3)]).history  # ends inside the warm-up
    expected = shorter["reconstruction"][0] + 10.0 * shorter["kl_style"][0] + shorter["kl_content"][0]
    np.testing.assert_allclose(shorter["loss"][0], expected, rtol=1e-5)
    assert model.kl_style_weight == 1.5


def test_bad_batches_and_ids_are_refused_in_one_line():
    model = make_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ragged = mlvae_tf.data.grouped_dataset(X, SHAPES, groups_per_batch=2)
    with pytest.raises(ValueError, match=r"`x` must yield pairs \(images float \[N, \*input_shape\], group_ids "
                                         r"int \[N, 2\]\)"):
        model.fit(ragged, verbose=0)
    gap = tf.data.Dataset.from_tensors((X, np.stack([SHAPES, COLOURS * 2], axis=1).astype(np.int32)))
    with pytest.raises(ValueError, match="`x` holds a pair batch whose group ids are not the ids of its groups"):
        model.fit(gap, verbose=0)
    with pytest.raises(ValueError, match=r"`group_ids` must have one entry per grouping \['shape', 'colour'\]"):
        model.encode_groups(X, {"shape": SHAPES})
    with pytest.raises(ValueError, match=r"group 1 has no observations"):
        model.encode_groups(X, {"shape": SHAPES, "colour": COLOURS * 2})
    with pytest.raises(ValueError, match=r"`content_dims\['colour'\]` must be an integer >= 1, got 0"):
        make_model(content_dims={"shape": 2, "colour": 0})


def test_the_swap_grid_of_one_latent_changes_that_latent_alone():
    model = make_model()
    tiles = latent_swap_grid(model, X[:3], "colour")
    blocks = latents(model, X[:3])
    content = np.concatenate([blocks["shape"][1:2], blocks["colour"][2:3]], axis=1)  # image 1 with 2's colour
    np.testing.assert_allclose(tiles[2][3], np.asarray(model.decode(content, blocks["style"][1:2]))[0], atol=1e-6)
    with pytest.raises(ValueError, match="`latent` must be one of"):
        latent_swap_grid(model, X[:3], "size")


def test_the_latent_factor_matrix_reads_a_factor_a_latent_holds_and_not_one_it_lacks():
    """Images that differ only in brightness (the "colour"), with labels of a second factor drawn
    at random: every latent predicts the colour on held-out images, and none the random factor."""
    model = make_model()
    rng = np.random.default_rng(0)

    def part(n):
        factors = {"colour": rng.integers(0, 2, n), "noise": rng.integers(0, 2, n)}
        images = np.broadcast_to(factors["colour"][:, None, None, None], (n, *INPUT_SHAPE)).astype(np.float32)
        return images, factors

    result = latent_factor_accuracy(model, part(60), part(60))
    assert set(result["accuracy"]) == {"shape", "colour", "style"}
    assert all(row["colour"] == 1.0 for row in result["accuracy"].values()), result
    assert all(row["noise"] < 0.75 for row in result["accuracy"].values()), result  # chance 0.5
    assert 0.5 <= result["chance"]["noise"] < 0.7


class _Latents:
    """A stand-in model whose latents are its inputs: rows `[content (2) | style (2)]`."""

    groupings = ("shape",)

    def encode(self, rows):
        rows = np.asarray(rows, np.float32)
        return {"content_mean": rows[:, :2], "content_log_var": np.zeros_like(rows[:, :2]),
                "style_mean": rows[:, 2:], "style_log_var": np.zeros_like(rows[:, 2:])}

    def split(self, content):
        return {"shape": content}


def test_the_mlp_probe_reads_a_factor_no_hyperplane_separates():
    """A factor that is the XOR of the style's two signs: the linear probe reads it at chance, the
    "mlp" probe nearly perfectly; the content, free of it, stays at chance under both."""
    rng = np.random.default_rng(0)

    def part(n):
        rows = rng.normal(size=(n, 4))
        return rows, {"xor": ((rows[:, 2] > 0) ^ (rows[:, 3] > 0)).astype(int)}

    train, test = part(1500), part(500)
    linear = latent_factor_accuracy(_Latents(), train, test)["accuracy"]
    mlp = latent_factor_accuracy(_Latents(), train, test, probe="mlp")["accuracy"]
    assert linear["style"]["xor"] < 0.6 and mlp["style"]["xor"] > 0.9, (linear, mlp)
    assert linear["shape"]["xor"] < 0.6 and mlp["shape"]["xor"] < 0.6
    with pytest.raises(ValueError, match="`probe` must be one of"):
        latent_factor_accuracy(_Latents(), train, test, probe="forest")


def test_the_group_encoder_exports_with_one_id_input_per_grouping_in_savedmodel_and_onnx(tmp_path):
    import onnxruntime as ort

    from export import export_model

    model = make_model()
    export_model(model, tmp_path, "multi")
    root = tmp_path / "multi"
    expected = {k: np.asarray(v) for k, v in model.encode_groups(X, {"shape": SHAPES, "colour": COLOURS}).items()}
    feeds = {"images": X, "group_ids_shape": SHAPES.astype(np.int32), "group_ids_colour": COLOURS.astype(np.int32)}
    served = tf.saved_model.load(str(root / "encoder" / "1")).signatures["encode_groups"](
        **{k: tf.constant(v) for k, v in feeds.items()})
    session = ort.InferenceSession(str(root / "onnx" / "group_encoder.onnx"))
    assert sorted(i.name for i in session.get_inputs()) == sorted(feeds)
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(names, feeds)))
    assert sorted(served) == sorted(onnx_out) == sorted(expected) == sorted(
        ["shape_mean", "shape_log_var", "colour_mean", "colour_log_var", "style_mean", "style_log_var"])
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(onnx_out[key], value, atol=1e-5, err_msg=key)
    with pytest.raises(Exception, match=mlvae_tf.validation.GUARD_SCOPE):  # a gap in the colour ids
        session.run(names, {**feeds, "group_ids_colour": (COLOURS * 2).astype(np.int32)})


def test_the_incremental_posterior_of_one_grouping():
    model = make_model()
    gp = mlvae_tf.GroupPosterior(model, grouping="colour").update(X[COLOURS == 2][:2]).update(X[COLOURS == 2][2:])
    groups = model.encode_groups(X, {"shape": SHAPES, "colour": COLOURS})
    np.testing.assert_allclose(gp.mean, groups["colour_mean"][2], atol=1e-5)
    np.testing.assert_allclose(gp.log_var, groups["colour_log_var"][2], atol=1e-5)
    with pytest.raises(ValueError, match=r"`grouping` must be one of \['shape', 'colour'\], got None"):
        mlvae_tf.GroupPosterior(model)


def test_accumulated_readings_are_the_product_of_each_group_of_k():
    from mlvae_tf.evaluation.latents import _accumulated

    rng = np.random.default_rng(0)
    mean, log_var = rng.normal(size=(8, 2)), rng.normal(size=(8, 2))
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    out = _accumulated(mean, log_var, labels, 4, np.random.default_rng(1))  # one group per label
    for label in (0, 1):
        members = labels == label
        precision = np.exp(-log_var[members])
        expected = (mean[members] * precision).sum(0) / precision.sum(0)
        np.testing.assert_allclose(out[members], np.tile(expected, (4, 1)), rtol=1e-5)
    np.testing.assert_allclose(_accumulated(mean, log_var, labels, 1, rng), mean, rtol=1e-6)  # k = 1: each alone


def test_padded_batches_give_the_same_loss_and_train_under_xla():
    groupings = {"shape": SHAPES, "colour": COLOURS}
    pad = mlvae_tf.data.largest_batch(SHAPES, 2)
    plain = multi_grouped_dataset(X, groupings, groups_per_batch=2, shuffle=False)
    padded = multi_grouped_dataset(X, groupings, groups_per_batch=2, shuffle=False, pad_to=pad)
    model = make_model()
    for (images, ids), (padded_images, padded_ids) in zip(plain, padded):
        n = len(ids)
        assert padded_ids.shape == (pad, 2) and (padded_ids.numpy()[n:] == -1).all()
        noise = {key: tf.concat([value, tf.zeros((pad - n, value.shape[1]))], 0)
                 for key, value in _noise(model, n).items()}
        expected = model.compute_elbo_terms(images, ids, int(ids[:, 0].numpy().max()) + 1,
                                            noise={k: v[:n] for k, v in noise.items()})
        got = model.compute_elbo_terms(padded_images, padded_ids, int(ids[:, 0].numpy().max()) + 1, noise=noise,
                                       num_segments=pad)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True, steps_per_execution=2)
    history = model.fit(padded, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all() and "kl_colour" in history


def test_an_epoch_variable_resumes_the_sequence_of_several_groupings_batches():
    """As `grouped_dataset`'s: a resumed run's first iteration yields that epoch's batches."""
    groupings = {"shape": SHAPES, "colour": COLOURS}
    counting = multi_grouped_dataset(X, groupings, groups_per_batch=2, seed=3)
    uninterrupted = [[images.tolist() for images, _ in counting.as_numpy_iterator()] for _ in range(3)]
    assert uninterrupted[1] != uninterrupted[2]
    epoch = tf.Variable(2, dtype=tf.int64)
    resumed = multi_grouped_dataset(X, groupings, groups_per_batch=2, seed=3, epoch=epoch)
    assert [images.tolist() for images, _ in resumed.as_numpy_iterator()] == uninterrupted[2]
    epoch.assign(0)
    assert [images.tolist() for images, _ in resumed.as_numpy_iterator()] == uninterrupted[0]


def test_load_splits_with_a_list_of_group_keys_gives_each_factors_labels(shapes_dir):
    one = mlvae_tf.data.load_splits("grouped_shapes/small", "shape", seed=1, data_dir=str(shapes_dir))
    several = mlvae_tf.data.load_splits("grouped_shapes/small", ["shape", "color"], seed=1, data_dir=str(shapes_dir))
    colour = mlvae_tf.data.load_splits("grouped_shapes/small", "color", seed=1, data_dir=str(shapes_dir))
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(several[part][0], one[part][0])
        np.testing.assert_array_equal(several[part][1]["shape"], one[part][1])
        np.testing.assert_array_equal(several[part][1]["color"], colour[part][1])
    assert sum(len(several[part][0]) for part in several) == 3000
    digits = mlvae_tf.data.load_splits("digits", ["label"])
    np.testing.assert_array_equal(digits["test"][1]["label"], mlvae_tf.data.load_splits("digits")["test"][1])
    with pytest.raises(ValueError, match="`group_key`: digits has one label, \"label\"; got \\['label', 'shape'\\]"):
        mlvae_tf.data.load_splits("digits", ["label", "shape"])


def test_the_ideal_split_tells_the_shape_only_as_circle_or_ring_or_not():
    """`benchmarks.rotation.ideal_representation`, the yardstick of a style that holds the rotation:
    its style is a function of (scale, position, rotation where it shows), so read by the MLP probe
    it gives the shape at 2/5 x 1/2 + 3/5 x 1/3 = 0.40 (circles against rings, and the other three
    among themselves, are guesses), and the rotation of the squares (a one-hot code of it)."""
    from benchmarks.rotation import ideal_representation, mlp_accuracy
    from mlvae_tf.data.grouped_shapes import SHAPES, generate

    _, factors = generate(3000, image_size=8, seed=1)
    style = ideal_representation(factors)["style_mean"]
    train, test = np.arange(2000), np.arange(2000, 3000)
    assert abs(mlp_accuracy(style, factors["shape"], train, test) - 0.40) < 0.05
    squares = np.flatnonzero(factors["shape"] == SHAPES.index("square"))
    assert mlp_accuracy(style, factors["rotation"], squares[squares < 2000], squares[squares >= 2000]) >= 0.95
    hidden = np.isin(factors["shape"], [SHAPES.index("circle"), SHAPES.index("ring")])
    assert np.all(style[hidden, -1] == 1.0) and np.all(style[~hidden, -1] == 0.0)
