"""The paper's protocol: conditional entropy, classifier bands on synthetic features, grid layout, the command."""

import json
import subprocess
import sys

import numpy as np

from mlvae_tf.evaluation import compute_protocol, conditional_entropy_bits, swap_grid


def test_conditional_entropy_is_the_cross_entropy_in_bits():
    labels = np.array([0, 1, 2, 1])
    probabilities = np.array([[0.5, 0.25, 0.25], [0.125, 0.875, 0.0], [0.25, 0.25, 0.5], [0.5, 0.5, 0.0]])
    expected = -(np.log2(0.5) + np.log2(0.875) + np.log2(0.5) + np.log2(0.5)) / 4
    assert abs(conditional_entropy_bits(labels, probabilities) - expected) < 1e-12
    assert conditional_entropy_bits(labels, np.eye(3)[labels]) == 0.0


def _synthetic(num_classes=4, per_class=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    images = rng.normal(size=(len(labels), 3)).astype(np.float32)
    images[:, 0] = labels  # the "image" carries its class in pixel 0
    return images, labels


def _represent(images, group_ids):
    """Content encodes the class exactly (one-hot of pixel 0, averaged over the group); style is noise."""
    content = np.eye(4)[images[:, 0].astype(int)]
    sizes = np.bincount(group_ids)
    group_content = np.stack([content[group_ids == g].mean(0) for g in range(len(sizes))])
    return {"content_mean": group_content, "style_mean": images[:, 1:]}


def test_protocol_gives_perfect_content_and_chance_style_on_synthetic_features():
    train, test = _synthetic(seed=0), _synthetic(seed=1)
    metrics = compute_protocol(_represent, train, test, ks=(1, 3), K=3, trials=2, progress=False)
    assert metrics["chance_accuracy"] == 0.25
    for k in ("1", "3"):
        assert metrics["content_accuracy"][k]["mean"] == 1.0
        assert metrics["content_cond_entropy_bits"][k]["mean"] < 0.1
        assert abs(metrics["style_accuracy"][k]["mean"] - 0.25) < 0.12  # noise: near chance
        assert metrics["style_cond_entropy_bits"][k]["mean"] > 1.5  # near log2(4) = 2 bits
    assert metrics["settings"]["trials"] == 2


def test_swap_grid_layout_matches_the_model(trained, digits_split):
    model = trained[0]
    x = digits_split["test"][0][:3]
    grid, tiles = swap_grid(model, x)
    assert grid.shape == (5 * 8, 5 * 8, 1)
    enc = model.encode(x)
    content = model.encode_groups(x, np.arange(3))["content_mean"]
    reconstructions = model.decode(content, enc["style_mean"]).numpy()
    for j in range(3):
        np.testing.assert_array_equal(tiles[0][j + 2], x[j])
        np.testing.assert_array_equal(tiles[j + 2][0], x[j])
        np.testing.assert_allclose(tiles[1][j + 2], reconstructions[j], atol=1e-6)
        np.testing.assert_allclose(tiles[j + 2][1], reconstructions[j], atol=1e-6)
        np.testing.assert_allclose(tiles[j + 2][j + 2], reconstructions[j], atol=1e-6)  # own content and style
    swapped = model.decode(content[2:3], enc["style_mean"][0:1]).numpy()[0]
    np.testing.assert_allclose(tiles[2][4], swapped, atol=1e-6)  # row: style of image 0; column: content of 2
    np.testing.assert_allclose(grid[16:24, 32:40], swapped, atol=1e-6)


def test_evaluate_command_writes_grids_plot_and_metrics(trained, tmp_path):
    model_path = tmp_path / "m.keras"
    trained[0].save(model_path)
    result = subprocess.run([sys.executable, "-m", "mlvae_tf.evaluate", "--model", str(model_path), "--out",
                             str(tmp_path / "report"), "--ks", "1,5", "--trials", "2"], capture_output=True, text=True,
                            check=True)
    assert "content accuracy" in result.stdout
    for name in ("swap_grid.png", "swap_grid_evidence.png", "interpolation.png", "generation.png", "evidence.png",
                 "protocol.png", "metrics.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    print({k: metrics[k] for k in ("content_accuracy", "style_accuracy")})
    assert metrics["content_accuracy"]["5"]["mean"] >= metrics["content_accuracy"]["1"]["mean"]
    assert metrics["content_cond_entropy_bits"]["5"]["mean"] < metrics["content_cond_entropy_bits"]["1"]["mean"]
    assert metrics["content_accuracy"]["1"]["mean"] > metrics["style_accuracy"]["1"]["mean"]
    missing = subprocess.run([sys.executable, "-m", "mlvae_tf.evaluate", "--model", str(tmp_path / "none.keras")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


class _FakeModel:
    """Content is the one-hot class of pixel 0, style is noise; `decode` draws the class of the
    content (or of the style's hidden class, with `uses_style`) as a prototype image."""

    def __init__(self, uses_style=False):
        self.uses_style = uses_style

    def encode(self, images):
        labels = images[:, 0].astype(int)
        return {"content_mean": np.eye(4)[labels], "content_log_var": np.zeros((len(images), 4)),
                "style_mean": np.eye(4)[labels] if self.uses_style else images[:, 1:3]}

    def decode(self, content, style):
        source = style if self.uses_style else content
        labels = np.argmax(source, axis=1)
        return np.stack([np.eye(4)[label] * 5 for label in labels])


def _prototypes(seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 30)
    return (np.eye(4)[labels] * 5 + rng.normal(scale=0.1, size=(120, 4))).astype(np.float32), labels


def test_leakage_checks_tell_a_decoder_that_uses_content_from_one_that_does_not():
    from mlvae_tf.evaluation import compute_leakage

    train = _prototypes(0)
    x, labels = _synthetic(seed=2)
    test = (np.concatenate([labels[:, None].astype(np.float32), x[:, 1:]], 1), labels)
    good = compute_leakage(_FakeModel(), train, test, style_accuracy=0.26, chance_accuracy=0.25)
    assert good["swap_follows_content"] == 1.0 and good["swap_follows_style"] == 0.0 and good["warnings"] == []
    np.testing.assert_allclose(good["content_kl_per_dim"], 0.5 * np.mean(np.eye(4)[labels] ** 2, 0))
    bad = compute_leakage(_FakeModel(uses_style=True), train, test, style_accuracy=1.0, chance_accuracy=0.25)
    assert bad["swap_follows_content"] == 0.0 and len(bad["warnings"]) == 2


def test_interpolation_generation_and_evidence_grids_match_the_model(trained, digits_split):
    from mlvae_tf.evaluation import evidence_grid, generation_grid, interpolation_grid

    model = trained[0]
    x, labels = digits_split["test"]
    a, b = x[0], x[1]
    enc = model.encode(np.stack([a, b]))
    grid, tiles = interpolation_grid(model, a, b, steps=3)
    assert grid.shape == (24, 24, 1)
    corners = model.decode(enc["content_mean"], enc["style_mean"]).numpy()
    np.testing.assert_allclose(tiles[0][0], corners[0], atol=1e-6)  # both from image a
    np.testing.assert_allclose(tiles[2][2], corners[1], atol=1e-6)  # both from image b
    middle = model.decode((enc["content_mean"][:1] + enc["content_mean"][1:]) / 2,
                          (enc["style_mean"][:1] + enc["style_mean"][1:]) / 2).numpy()[0]
    np.testing.assert_allclose(tiles[1][1], middle, atol=1e-6)

    group = x[labels == labels[0]][:5]
    content = model.encode_groups(group, np.zeros(5, np.int32))["content_mean"].numpy()
    _, tiles = generation_grid(model, group, num_styles=3, seed=1)
    styles = np.random.default_rng(1).normal(size=(3, model.style_dim)).astype(np.float32)
    np.testing.assert_allclose(tiles[1][2], model.decode(content, styles[2:3]).numpy()[0], atol=1e-6)
    assert tiles[1][3] is None and all(np.array_equal(t, g) for t, g in zip(tiles[0], group))

    _, tiles = evidence_grid(model, group[:3])
    style = model.encode(group[:3])["style_mean"].numpy()
    alone = model.encode(group[:3])["content_mean"].numpy()
    np.testing.assert_allclose(tiles[1][1], model.decode(alone[1:2], style[1:2]).numpy()[0], atol=1e-5)
    together = model.encode_groups(group[:3], np.zeros(3, np.int32))["content_mean"].numpy()
    np.testing.assert_allclose(tiles[2][2], model.decode(together, style[2:3]).numpy()[0], atol=1e-5)


def test_unseen_groups_split_within_each_group_and_run_the_protocol():
    from mlvae_tf.evaluation import split_within_groups

    x, labels = _synthetic(per_class=20, seed=3)
    train, test = split_within_groups((x, labels), seed=0)
    assert len(train[1]) + len(test[1]) == len(labels)
    assert set(train[1]) == set(test[1]) == set(range(4))  # every group on both sides
    assert not set(map(bytes, train[0])) & set(map(bytes, test[0]))  # no image on both sides
    metrics = compute_protocol(_represent, train, test, ks=(1, 2), K=2, trials=1, progress=False)
    assert metrics["content_accuracy"]["2"]["mean"] == 1.0
