"""Configs: defaults, the shipped files, validation naming the key, overrides."""

import pathlib

import pytest
import yaml

from mlvae_tf.config import DEFAULTS, ConfigError, apply_overrides, load_config, validate

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"


def test_default_config_file_is_the_built_in_default():
    assert load_config(CONFIGS / "digits.yaml") == load_config(None) == DEFAULTS


@pytest.mark.parametrize("name", ["digits", "mnist", "fashion_mnist", "msceleb64", "shapes", "groupings", "digits_critic",
                                  "digits_group_variance", "fashion_mnist_kl_style", "fashion_mnist_group_variance"])
def test_every_shipped_config_is_valid_and_uses_the_paper_optimiser(name):
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config["name"] == name and config["train"]["learning_rate"] == 1e-3
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert raw["data"]["name"] == config["data"]["name"]


def test_paper_settings_in_the_paper_configs():
    mnist, celeb = load_config(CONFIGS / "mnist.yaml"), load_config(CONFIGS / "msceleb64.yaml")
    assert (mnist["model"]["content_dim"], mnist["model"]["hidden_units"], mnist["train"]["epochs"]) == (10, 500, 2000)
    assert (celeb["model"]["content_dim"], celeb["model"]["architecture"], celeb["train"]["epochs"]) == (50, "conv64", 250)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"modle": {}}, r"unknown config key `modle`; allowed keys: \['data', 'evaluate', 'model', 'name', 'train'\]"),
        ({"model": {"colour": 1}}, "unknown config key `model.colour`"),
        ({"model": {"likelihood": "poisson"}}, r"`model.likelihood` must be one of \['bernoulli', 'normal', "),
        ({"model": {"content_dim": 0}}, r"`model.content_dim` must be an integer >= 1, or a mapping .*, got 0"),
        ({"model": {"content_dim": "10"}}, r"`model.content_dim` must be an integer >= 1, or a mapping .*, got '10'"),
        ({"model": {"content_dim": {"shape": 0}}}, r"`model.content_dim` must be .*, got \{'shape': 0\}"),
        ({"data": {"group_key": ["shape", "shape"]}}, "`data.group_key` must be a label name, or a list of distinct"),
        ({"data": {"group_key": "shape"}, "model": {"content_dim": {"shape": 4}}},
         r"`model.content_dim` is a mapping \{'shape': 4\}, which needs several groupings: make data.group_key a list"),
        ({"data": {"group_key": ["shape", "color"]}, "model": {"content_dim": {"color": 4, "shape": 8}}},
         r"`model.content_dim` must map every grouping of data.group_key \['shape', 'color'\], in that order"),
        ({"data": {"group_key": ["shape", "color"]}, "model": {"content_dim": 4, "kind": "vae"}},
         "lists several groupings .* which only model.kind mlvae trains"),
        ({"data": {"group_key": ["shape", "color"]}, "model": {"content_dim": 4, "cycle_weight": 1.0}},
         "`model.cycle_weight` must be 0 with several groupings"),
        ({"model": {"group_variance_weight": -3}}, "`model.group_variance_weight` must be a number >= 0"),
        ({"model": {"architecture": "spatial", "style_dim": 3}},
         "`model.style_dim` must be >= 4 with model.architecture spatial"),
        ({"model": {"architecture": "equivariant", "style_dim": 2}},
         "`model.style_dim` must be >= 4 with model.architecture equivariant"),
        ({"train": {"learning_rate": -1}}, "`train.learning_rate` must be a number > 0"),
        ({"data": {"name": "imagenet"}}, r"`data.name` must be one of \['digits', "),
        ({"evaluate": {"ks": []}}, "`evaluate.ks` must be a non-empty list of integers >= 1"),
        ({"evaluate": {"K": 4, "ks": [1, 5]}}, r"`evaluate.ks` must be <= evaluate.K=4"),
        ({"evaluate": {"features": "median"}}, r"`evaluate.features` must be one of \['sample', 'mean'\]"),
        ({"model": 3}, "config section `model` must be a mapping"),
    ],
)
def test_bad_configs_name_the_key_and_the_allowed_values(config, match):
    with pytest.raises(ConfigError, match=match):
        validate(config)


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    config = load_config(None, ["model.content_dim=16", "evaluate.ks=[1, 3]", "data.max_group_size=null"])
    assert config["model"]["content_dim"] == 16 and config["evaluate"]["ks"] == [1, 3]
    assert config["data"]["max_group_size"] is None
    # YAML 1.1 reads 1e-4 (no dot) as a string; a learning rate written so is a number, and an int works too.
    config = load_config(None, ["train.learning_rate=1e-4", "model.penalty_weight=2E1", "name=1e5x"])
    assert config["train"]["learning_rate"] == 1e-4 and config["model"]["penalty_weight"] == 20.0
    assert config["name"] == "1e5x"
    with pytest.raises(ConfigError, match="`model.style_dim` must be an integer >= 1, got 'x'"):
        load_config(None, ["model.style_dim=x"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        apply_overrides(DEFAULTS, ["model.style_dim"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)


def test_a_list_of_group_keys_gives_each_grouping_its_content_size():
    from mlvae_tf.config import content_dims

    assert content_dims(load_config(CONFIGS / "groupings.yaml")) == {"shape": 8, "color": 4}
    same = load_config(None, ["data.group_key=[shape, color]", "model.content_dim=5"])
    assert content_dims(same) == {"shape": 5, "color": 5}
    assert content_dims(load_config(None)) is None  # one grouping: the ML-VAE
    # The HSIC, group-variance and critic options apply to every grouping (the cycle is refused, above).
    hsic = load_config(CONFIGS / "groupings.yaml", ["model.independence_weight=3000", "model.group_variance_weight=30",
                                                     "model.critic_weight=10"])
    assert [hsic["model"][f"{option}_weight"] for option in ("independence", "group_variance", "critic")] == [
        3000.0, 30.0, 10.0]


@pytest.mark.parametrize("name, base, row, extra", [
    ("digits_critic", None, "style 10, critic, weight 10", ["train.epochs=40"]),
    ("digits_group_variance", None, "style 10, group variance, weight 3000", ["train.epochs=40"]),
    ("fashion_mnist_kl_style", CONFIGS / "fashion_mnist.yaml", "style 10, style KL weight 100", []),
    ("fashion_mnist_group_variance", CONFIGS / "fashion_mnist.yaml",
     "style 10, group variance 300, style KL weight 3 and one content sample per group",
     ["model.likelihood=bernoulli", "model.observation_scale=1.0"]),  # `--set model.likelihood=bernoulli` (and
    # the Normal's scale, which the Bernoulli does not use, back to its default)
])
def test_the_recommended_style_configs_are_the_measured_rows(name, base, row, extra):
    """Issue 16's recommended configs are `benchmarks.style_leakage`'s rows whose numbers their
    comments quote (`extra`: the benchmark's own epochs on the digits, or its `--set`): the same
    settings but the name."""
    from benchmarks.style_leakage import OPTIONS

    overrides = dict(OPTIONS)[row]  # the row is still measured
    assert load_config(CONFIGS / f"{name}.yaml") == {**load_config(base, extra + overrides), "name": name}
