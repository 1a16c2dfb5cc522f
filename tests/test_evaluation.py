"""The paper's protocol: conditional entropy, classifier bands on synthetic features, grid layout, the command."""

import json
import os

import numpy as np
import pytest

from mlvae_tf.evaluation import check_disjoint, compute_protocol, conditional_entropy_bits, largest_K, swap_grid
from tests.conftest import run_cli


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


def _represent(images, group_ids, noise=0.0, log_var=-20.0):
    """Content encodes the class (one-hot of pixel 0, plus per-image noise `noise * pixels 1:3`
    padded) averaged over the group; style is pixels 1:3 (noise); both with variance exp(log_var)."""
    content = np.eye(4)[images[:, 0].astype(int)]
    content[:, 1:3] += noise * images[:, 1:3]
    sizes = np.bincount(group_ids)
    group_content = np.stack([content[group_ids == g].mean(0) for g in range(len(sizes))])
    return {"content_mean": group_content, "content_log_var": np.full_like(group_content, log_var),
            "style_mean": images[:, 1:], "style_log_var": np.full_like(images[:, 1:], log_var)}


def test_protocol_gives_perfect_content_and_chance_style_on_synthetic_features():
    test = _synthetic(per_class=60, seed=1)
    metrics = compute_protocol(_represent, test, K=6, ks=(1, 3), trials=2, features="mean", progress=False)
    assert metrics["chance_accuracy"] == 0.25
    for k in ("1", "3"):
        assert metrics["content_accuracy"][k]["mean"] == 1.0
        assert metrics["content_cond_entropy_bits"][k]["mean"] < 0.1
        assert abs(metrics["style_accuracy"][k]["mean"] - 0.25) < 0.15  # noise: near chance
        assert metrics["style_cond_entropy_bits"][k]["mean"] > 1.5  # near log2(4) = 2 bits
    settings = metrics["settings"]
    assert (settings["K"], settings["trials"], settings["features"], settings["images_per_set"]) == (6, 2, "mean", 24)
    assert settings["disjoint_trials"]  # 2 trials x 3 sets x 6 images <= 60 per class


def test_protocol_sets_are_test_images_k_per_group_and_evidence_helps():
    """Every call groups exactly k images of one class (K for the classifier's training and
    validation sets, leftovers included); per-image noise averages out, so accuracy rises with k."""
    calls = []

    def recording(images, group_ids):
        for g in np.unique(group_ids):
            calls.append((len(np.unique(images[group_ids == g, 0])), int(np.sum(group_ids == g))))
        return _represent(images, group_ids, noise=1.0)

    x, labels = _synthetic(per_class=40, seed=4)
    metrics = compute_protocol(recording, (x, labels), K=10, ks=(1, 3, 10), trials=3, features="mean",
                               progress=False)
    assert {classes for classes, _ in calls} == {1}  # a group never mixes classes
    assert {size for _, size in calls} == {1, 3, 10}  # 10 = 3 * 3 + 1: the leftover gets 3 too
    accuracy = [metrics["content_accuracy"][k]["mean"] for k in ("1", "3", "10")]
    assert accuracy[0] < accuracy[1] < accuracy[2] and accuracy[2] > 0.9, accuracy
    assert not metrics["settings"]["disjoint_trials"]  # 3 x 30 > 40 images per class


def test_protocol_samples_the_posteriors_as_eq_4():
    """With a wide posterior, samples are noise: the content accuracy falls to chance, while means
    keep it perfect."""
    test = _synthetic(per_class=30, seed=5)
    wide = lambda images, ids: _represent(images, ids, log_var=np.log(100.0))  # noqa: E731
    sampled = compute_protocol(wide, test, K=10, ks=(1,), trials=2, features="sample", progress=False)
    means = compute_protocol(wide, test, K=10, ks=(1,), trials=2, features="mean", progress=False)
    assert means["content_accuracy"]["1"]["mean"] == 1.0
    assert sampled["content_accuracy"]["1"]["mean"] < 0.5


def test_protocol_refuses_impossible_settings():
    test = _synthetic(per_class=20, seed=6)
    assert largest_K(test[1]) == 6
    with pytest.raises(ValueError, match="ks"):
        compute_protocol(_represent, test, K=3, ks=(1, 5), progress=False)
    with pytest.raises(ValueError, match="largest K that every class allows is 6"):
        compute_protocol(_represent, test, K=7, ks=(1,), progress=False)
    with pytest.raises(ValueError, match="features"):
        compute_protocol(_represent, test, K=3, ks=(1,), features="mode", progress=False)


def test_evaluation_refuses_training_images_and_seen_groups():
    train, test = _synthetic(seed=7), _synthetic(seed=8)
    check_disjoint(train, test)
    leaked = (np.concatenate([test[0][:5], train[0][:3]]), np.concatenate([test[1][:5], train[1][:3]]))
    with pytest.raises(ValueError, match="3 of the 8 test images are training images"):
        check_disjoint(train, leaked)
    with pytest.raises(ValueError, match="test groups .* were seen in training"):
        check_disjoint(train, test, unseen_groups=True)
    check_disjoint(train, (test[0], test[1] + 4), unseen_groups=True)


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
    # Strategy 2: image j's content accumulated with other images of its group (column j); styles unchanged.
    _, labels = digits_split["test"]
    evidence = [digits_split["test"][0][labels == labels[j]][1 : 2 + j] for j in range(3)]  # 1, 2, 3 images
    _, tiles = swap_grid(model, x, evidence=evidence)
    for j in range(3):
        group = np.concatenate([x[j : j + 1], evidence[j]])
        content_j = model.encode_groups(group, np.zeros(len(group), np.int32))["content_mean"]
        assert not np.allclose(content_j, content[j : j + 1], atol=1e-3)  # the evidence moves the content
        for i in range(3):
            expected = model.decode(content_j, enc["style_mean"][i : i + 1]).numpy()[0]
            np.testing.assert_allclose(tiles[i + 2][j + 2], expected, atol=1e-5)


def _evaluate(capsys, *args):
    """`mlvae evaluate ARGS` in this process: `(exit status, stdout, stderr)`."""
    return run_cli(capsys, "evaluate", *args)


def _evaluate_in_process(capsys, *args):
    """`mlvae evaluate ARGS`' failure: `(exit status, stderr)`."""
    status, _, err = _evaluate(capsys, *args)
    return status, err


@pytest.mark.slow
def test_evaluate_command_writes_grids_plot_and_metrics(trained_file, tmp_path, capsys):
    model_path = trained_file
    status, out, err = _evaluate(capsys, "--model", model_path, "--data", "digits", "--data-seed", 0, "--out",
                                 tmp_path / "report", "--K", 6, "--ks", "1,6", "--trials", 2)
    assert status == 0, err[-2000:]
    assert "content accuracy" in out and "K=6" in out
    for name in ("swap_grid.png", "swap_grid_evidence.png", "interpolation.png", "generation.png", "evidence.png",
                 "protocol.png", "metrics.json"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    settings = metrics["settings"]
    assert (settings["K"], settings["ks"], settings["trials"], settings["features"]) == (6, [1, 6], 2, "sample")
    assert settings["data"] == {"name": "digits", "group_key": "label", "seed": 0, "config": None}
    assert metrics["content_accuracy"]["6"]["mean"] >= metrics["content_accuracy"]["1"]["mean"]
    assert metrics["content_cond_entropy_bits"]["6"]["mean"] < metrics["content_cond_entropy_bits"]["1"]["mean"]
    assert metrics["content_accuracy"]["1"]["mean"] > metrics["style_accuracy"]["1"]["mean"]
    status, stderr = _evaluate_in_process(capsys, "--model", tmp_path / "none.keras")
    assert status == 2 and "--model: no such file" in stderr and len(stderr.splitlines()) == 1
    status, stderr = _evaluate_in_process(capsys, "--model", model_path)
    assert status == 2 and "no config.yaml in the model's run folder" in stderr
    status, stderr = _evaluate_in_process(capsys, "--model", model_path, "--data", "digits", "--K", 50, "--ks", 1,
                                          "--out", tmp_path / "big")
    assert status == 1 and len(stderr.splitlines()) == 1 and not (tmp_path / "big").exists()
    assert "the largest K that every class allows is 6" in stderr
    for ks, message in (("1,x", "--ks must be comma-separated integers, got '1,x'"), ("0,2", "ks")):
        status, stderr = _evaluate_in_process(capsys, "--model", model_path, "--data", "digits", "--ks", ks,
                                              "--out", tmp_path / "bad_ks")
        assert status in (1, 2) and len(stderr.splitlines()) == 1 and message in stderr, stderr
    # The digits' split shares its groups between train and test: --unseen-groups refuses it.
    status, stderr = _evaluate_in_process(capsys, "--model", model_path, "--data", "digits", "--unseen-groups",
                                          "--out", tmp_path / "unseen")
    assert status == 1 and len(stderr.splitlines()) == 1 and "unseen" in stderr, stderr
    assert not (tmp_path / "bad_ks").exists() and not (tmp_path / "unseen").exists()


@pytest.mark.slow
def test_evaluate_takes_the_split_and_settings_from_the_run(trained, tmp_path, capsys, monkeypatch):
    """A run trained on data.seed=3: evaluate uses its split and its `evaluate:` section, and
    refuses another split (whose test images would include the run's training images)."""
    import yaml

    from mlvae_tf.config import load_config

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    trained[0].save(run / "checkpoints" / "epoch_001.keras")
    config = load_config(None, ["data.seed=3", "evaluate.K=5", "evaluate.ks=[1, 5]", "evaluate.trials=1",
                                "evaluate.features=mean"])
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)  # the report's default folder is reports/<the run's name>, from here
    status, _, err = _evaluate(capsys, "--model", run / "checkpoints" / "epoch_001.keras")
    assert status == 0, err[-2000:]
    settings = json.loads((tmp_path / "reports" / "digits" / "metrics.json").read_text())["settings"]  # the run's name
    assert settings["model"] == str(run / "checkpoints" / "epoch_001.keras")
    assert settings["data"]["seed"] == 3 and settings["data"]["config"] == str(run / "config.yaml")
    assert (settings["K"], settings["ks"], settings["trials"], settings["features"]) == (5, [1, 5], 1, "mean")
    status, stderr = _evaluate_in_process(capsys, "--model", run / "checkpoints" / "epoch_001.keras", "--data-seed", 0)
    assert status == 2 and "--data-seed differ from the run's config" in stderr and len(stderr.splitlines()) == 1


def test_evaluate_refuses_a_data_set_of_another_image_shape(tmp_path, capsys):
    from tests.conftest import make_tiny_model

    make_tiny_model(input_shape=(16, 8, 1)).save(tmp_path / "m.keras")
    status, stderr = _evaluate_in_process(capsys, "--model", tmp_path / "m.keras", "--data", "digits", "--out",
                                          tmp_path / "report")
    assert status == 1 and len(stderr.splitlines()) == 1
    assert "the model takes images of shape (16, 8, 1), but data 'digits' has (8, 8, 1)" in stderr
    assert not (tmp_path / "report").exists()


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
    # Strategy 2 (Figure 5b): each content accumulated over its image and others of its group.
    same_a, same_b = x[labels == labels[0]][1:4], x[labels == labels[1]][1:3]
    _, tiles = interpolation_grid(model, a, b, steps=3, evidence=(same_a, same_b))
    content_a = model.encode_groups(np.concatenate([a[None], same_a]), np.zeros(4, np.int32))["content_mean"]
    content_b = model.encode_groups(np.concatenate([b[None], same_b]), np.zeros(3, np.int32))["content_mean"]
    np.testing.assert_allclose(tiles[0][0], model.decode(content_a, enc["style_mean"][:1]).numpy()[0], atol=1e-5)
    np.testing.assert_allclose(tiles[2][2], model.decode(content_b, enc["style_mean"][1:]).numpy()[0], atol=1e-5)

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


def test_tiles_upscaled_with_gaps_are_the_tiles_pixel_for_pixel(tmp_path):
    from mlvae_tf.evaluate import save_tiles
    from mlvae_tf.evaluation import readable_scale, tile

    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(size=(2, 3, 1)).astype(np.float32) for _ in range(3))
    tiles = [[None, a], [b, c]]
    grid = tile(tiles, scale=3, gap=2)
    assert grid.shape == (2 * 6 + 2, 2 * 9 + 2, 1)
    np.testing.assert_array_equal(grid[:6, :9], 1.0)  # the blank
    np.testing.assert_array_equal(grid[6:8], 1.0)  # the gap between the rows
    np.testing.assert_array_equal(grid[:, 9:11], 1.0)  # and between the columns
    np.testing.assert_array_equal(grid[:6, 11:], np.kron(a[..., 0], np.ones((3, 3)))[..., None])
    np.testing.assert_array_equal(grid[8:, :9], np.kron(b[..., 0], np.ones((3, 3)))[..., None])
    np.testing.assert_array_equal(tile(tiles), np.concatenate([np.concatenate([np.ones_like(a), a], 1),
                                                               np.concatenate([b, c], 1)], 0))
    assert readable_scale(tiles) == 32 and readable_scale([[np.zeros((64, 80, 3))]]) == 1
    import matplotlib.image

    save_tiles(tiles, tmp_path / "t.png", "a title", rows=["r1", "r2"], columns=["c1", "c2"])
    picture = matplotlib.image.imread(tmp_path / "t.png")
    assert picture.shape[0] >= 2 * 64 and picture.shape[1] >= 2 * 96  # tiles of at least 64 pixels, labels around


def test_report_files_are_written_whole_or_not_at_all(tmp_path):
    from mlvae_tf.files import atomic_path

    path = tmp_path / "metrics.json"
    path.write_text('{"old": 1}')
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write('{"new": ')  # half a file, then the writer dies
            raise RuntimeError("killed")
    assert path.read_text() == '{"old": 1}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    with atomic_path(path) as tmp:
        assert tmp.endswith(".json") and os.path.dirname(tmp) == str(tmp_path)  # matplotlib reads the extension
        with open(tmp, "w") as f:
            f.write('{"new": 2}')
    assert json.loads(path.read_text()) == {"new": 2} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_write_removes_the_temporaries_of_killed_writers_and_only_theirs(tmp_path):
    import subprocess
    import sys

    from mlvae_tf.files import atomic_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited: its temporaries are stale
    stale = tmp_path / f".metrics.json.tmp-{dead_pid}.json"
    live = tmp_path / f".metrics.json.tmp-{os.getppid()}.json"  # a writer that is still running
    other = tmp_path / f".report.json.tmp-{dead_pid}.json"  # another file's: left to that file's next write
    for path in (stale, live, other):
        path.write_text("half a file")
    with atomic_path(tmp_path / "metrics.json") as tmp, open(tmp, "w") as f:
        f.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["metrics.json", live.name, other.name])
