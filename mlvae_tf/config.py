"""Experiment configs: defaults, validation before any work starts, and `--set a.b=value` overrides.

A config is a nested dict with the sections `data`, `model`, `train`, `evaluate` and a `name`.
Every key is checked: an unknown key, a wrong type or an impossible value raises `ConfigError`
naming the key and what it allows.
"""

import copy
import functools
import re

import yaml

__all__ = ["ConfigError", "DEFAULTS", "DATASETS", "MODELS", "load_config", "validate", "apply_overrides",
           "content_dims"]

DATASETS = ("digits", "fashion_mnist", "mnist", "grouped_shapes", "grouped_shapes/small")
MODELS = ("mlvae", "vae", "regularised_vae", "svi")


class ConfigError(ValueError):
    """A config key that is unknown, of the wrong type or of an impossible value."""


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1, "an integer >= 1"


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool), "an integer"


def _positive_float(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0, "a number > 0"


def _non_negative_float(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0, "a number >= 0"


def _optional_positive_int(value):
    return value is None or _positive_int(value)[0], "an integer >= 1 or null"


def _bool(value):
    return isinstance(value, bool), "true or false"


def _bool_or_auto(value):
    return isinstance(value, bool) or value == "auto", "true, false or auto"


def _string(value):
    return isinstance(value, str) and bool(value), "a non-empty string"


def _folder_name(value):
    ok = isinstance(value, str) and bool(value) and "/" not in value and "\\" not in value and not value.startswith(".")
    return ok, "a plain folder name (no '/', no leading '.'), the run's folder under --runs-dir"


def _optional_string(value):
    return value is None or _string(value)[0], "a non-empty string or null"


def _ks(value):
    return (isinstance(value, list) and bool(value) and all(_positive_int(k)[0] for k in value),
            "a non-empty list of integers >= 1")


def _group_keys(value):
    one = _string(value)[0]
    several = (isinstance(value, list) and bool(value) and all(_string(key)[0] for key in value)
               and len(set(value)) == len(value))
    return one or several, "a label name, or a list of distinct label names (several groupings: MultiLevelVAE)"


def _content_dims(value):
    several = (isinstance(value, dict) and bool(value)
               and all(_string(key)[0] and _positive_int(size)[0] for key, size in value.items()))
    return _positive_int(value)[0] or several, "an integer >= 1, or a mapping {group_key: integer >= 1}"


def _choice(*choices):
    return lambda value: (value in choices, f"one of {list(choices)}")


@functools.cache
def _schema():
    """The config's keys and their checks. Built on first use: the choices of `networks` and
    `distributions` import TensorFlow, which `mlvae --help` does without."""
    from mlvae_tf import distributions, networks

    return {
        "name": _folder_name,
        "data": {
            "name": _choice(*DATASETS),
            "group_key": _group_keys,  # a list: one grouping per label, the first the batches' (MultiLevelVAE)
            "groups_per_batch": _positive_int,
            "max_group_size": _optional_positive_int,
            "seed": _int,
            "data_dir": _optional_string,  # TFDS's data_dir (mnist, grouped_shapes); null: TFDS's default
        },
        "model": {
            "kind": _choice(*MODELS),  # the paper's ML-VAE, or one of its baselines (mlvae_tf.models)
            "content_dim": _content_dims,  # a mapping: each grouping's content size
            "style_dim": _positive_int,
            "architecture": _choice(*networks.ARCHITECTURES),
            "likelihood": _choice(*distributions.LIKELIHOODS),
            "aggregation": _choice(*distributions.AGGREGATIONS),
            "hidden_units": _positive_int,
            "observation_scale": _positive_float,
            "kl_style_weight": _non_negative_float,
            "kl_content_weight": _non_negative_float,
            "penalty_weight": _non_negative_float,  # regularised_vae: lambda of eq. 18
            "inference_steps": _positive_int,  # svi: Adam steps of test-time inference
            "content_samples": _choice("observation", "group"),  # mlvae: one content sample per ...
            "cycle_weight": _non_negative_float,  # mlvae: the reverse cycle's weight (0: the paper's model)
            "critic_weight": _non_negative_float,  # mlvae: the style critic's weight (0: the paper's model)
            "independence_weight": _non_negative_float,  # mlvae: the style-group HSIC's weight (0: the paper's)
            "group_variance_weight": _non_negative_float,  # mlvae: the style's between-group share (0: the paper's)
        },
        "train": {
            "epochs": _positive_int,
            "learning_rate": _positive_float,
            "seed": _int,
            "grid_every": _positive_int,
            "jit_compile": _bool_or_auto,  # auto: the model's fastest measured path (MLVAE.compile)
            "steps_per_execution": _positive_int,
            "checkpoint_every": _positive_int,
            "keep_checkpoints": _positive_int,
            "strategy": _choice("none", "mirrored", "multi_worker"),  # tf.distribute (README, "Several devices")
        },
        "evaluate": {  # the classifier protocol of supplement 3.1 (mlvae_tf.evaluation.compute_protocol)
            "K": _optional_positive_int,
            "ks": _ks,
            "trials": _positive_int,
            "features": _choice("sample", "mean"),
        },
    }


DEFAULTS = {
    "name": "digits",
    "data": {"name": "digits", "group_key": "label", "groups_per_batch": 8, "max_group_size": 10, "seed": 0,
             "data_dir": None},
    # style_dim 3 (not the paper's 10): on the digits a larger style keeps the class (README, "Style leakage").
    "model": {"kind": "mlvae", "content_dim": 10, "style_dim": 3, "architecture": "mlp", "likelihood": "bernoulli",
              "aggregation": "product", "hidden_units": 500, "observation_scale": 1.0, "kl_style_weight": 1.0,
              "kl_content_weight": 1.0, "penalty_weight": 1.0, "inference_steps": 100,
              "content_samples": "observation", "cycle_weight": 0.0, "critic_weight": 0.0,
              "independence_weight": 0.0, "group_variance_weight": 0.0},
    # steps_per_execution: steps per call into TensorFlow (callbacks see every 10th batch); the same
    # training, faster. jit_compile: "auto" runs the model's fastest measured path (XLA on padded
    # (images, group_ids) pairs for the "mlp" and "spatial" networks, graph mode for conv64 and
    # "equivariant" on a CPU; MLVAE.compile); true forces XLA, false graph mode.
    # checkpoint_every, keep_checkpoints: a checkpoint every N epochs, the last few kept (with
    # best.keras): 5 x 9.8 MB for the paper's MNIST model, whatever the number of epochs.
    "train": {"epochs": 120, "learning_rate": 1e-3, "seed": 0, "grid_every": 10, "jit_compile": "auto",
              "steps_per_execution": 10, "checkpoint_every": 1, "keep_checkpoints": 5,
              "strategy": "none"},
    # K: test images per class in each of the classifier's three sets; null: the largest the test
    # classes allow, at most the paper's 100. The digits' smallest test class has 18 images: K = 6.
    "evaluate": {"K": 6, "ks": [1, 2, 3, 6], "trials": 5, "features": "sample"},
}


def validate(config, schema=None, prefix=""):
    """Raises `ConfigError` at the first key that is unknown or has a bad value; returns `config`."""
    schema = _schema() if schema is None else schema
    if not isinstance(config, dict):
        raise ConfigError(f"config section `{prefix.rstrip('.') or '(top level)'}` must be a mapping, got "
                          f"{type(config).__name__}.")
    for key, value in config.items():
        if key not in schema:
            raise ConfigError(f"unknown config key `{prefix}{key}`; allowed keys: {sorted(schema)}.")
        check = schema[key]
        if isinstance(check, dict):
            validate(value, check, f"{prefix}{key}.")
        else:
            ok, expected = check(value)
            if not ok:
                raise ConfigError(f"config key `{prefix}{key}` must be {expected}, got {value!r}.")
    if not prefix and "group_key" in config.get("data", {}) and "content_dim" in config.get("model", {}):
        _check_groupings(config["data"], config["model"])
    if not prefix:
        _check_posed(config.get("model", {}))
    if prefix == "evaluate." and config.get("K") is not None and max(config.get("ks", [1])) > config["K"]:
        raise ConfigError(f"config key `evaluate.ks` must be <= evaluate.K={config['K']} (k test images are "
                          f"accumulated out of the K per class), got {config['ks']}.")
    return config


def _check_posed(model):
    """The posing decoders ("spatial", "equivariant") take the style's first `networks.POSE_DIMS` dimensions."""
    from mlvae_tf.networks import POSE_DIMS, POSED

    if model.get("architecture") in POSED and model.get("style_dim", POSE_DIMS) < POSE_DIMS:
        raise ConfigError(f"config key `model.style_dim` must be >= {POSE_DIMS} with model.architecture "
                          f"{model['architecture']} (its first dimensions pose the image), got {model['style_dim']!r}.")


def _check_groupings(data, model):
    """The checks that join `data.group_key` and the model: several groupings are the ML-VAE's
    (`MultiLevelVAE`), each with a content size; one grouping takes one size."""
    keys, dims = data.get("group_key"), model.get("content_dim")
    if isinstance(keys, list):
        if model.get("kind", "mlvae") != "mlvae":
            raise ConfigError(f"config key `data.group_key` lists several groupings {keys}, which only model.kind "
                              f"mlvae trains (a MultiLevelVAE); got model.kind {model['kind']!r}.")
        if model.get("cycle_weight"):
            raise ConfigError(f"config key `model.cycle_weight` must be 0 with several groupings (data.group_key "
                              f"{keys}), got {model['cycle_weight']!r}.")
        if isinstance(dims, dict) and list(dims) != keys:
            raise ConfigError(f"config key `model.content_dim` must map every grouping of data.group_key {keys}, "
                              f"in that order, to its size; got {dims!r}.")
    elif isinstance(dims, dict):
        raise ConfigError(f"config key `model.content_dim` is a mapping {dims!r}, which needs several groupings: "
                          f"make data.group_key a list of its keys (one grouping: an integer).")


def content_dims(config):
    """`{group_key: content size}` of a config with several groupings (`data.group_key` a list),
    else None."""
    keys, dims = config["data"]["group_key"], config["model"]["content_dim"]
    if not isinstance(keys, list):
        return None
    return dict(dims) if isinstance(dims, dict) else {key: dims for key in keys}


def _merge(base, update):
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _value(raw):
    """A `--set` value as YAML reads it, with YAML 1.1's gap filled: `1e-4` (no dot) is a number."""
    value = yaml.safe_load(raw)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def apply_overrides(config, overrides):
    """Applies `["model.content_dim=16", ...]`; values are parsed as YAML (`16`, `0.5`, `[1, 5]`, `null`)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value.")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        node = config
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"unknown config key `{path}`; allowed sections: {sorted(_schema())}.")
            node = node[key]
        node[keys[-1]] = _value(raw)
    return config


def load_config(path=None, overrides=()):
    """The defaults, updated by the YAML file at `path` and by `overrides`, validated.

    Raises:
        ConfigError: a bad key or value (the file's or an override's); FileNotFoundError.
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        with open(path) as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
        validate(loaded)
        config = _merge(config, loaded)
    config = apply_overrides(config, overrides)
    return validate(config)
