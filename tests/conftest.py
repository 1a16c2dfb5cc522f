"""Shared fixtures: seeded, tiny and odd-sized, and one trained digits model per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mlvae_tf  # noqa: E402

INPUT_SHAPE = (8, 8, 1)
CONTENT_DIM = 5
STYLE_DIM = 3
TRAIN_EPOCHS = 30


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def make_tiny_model(**kwargs):
    config = dict(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=17, seed=0)
    config.update(kwargs)
    return mlvae_tf.MLVAE(**config)


@pytest.fixture(scope="session")
def digits_split():
    """Observation split of the digits (all 10 groups in every part): 70% / 15% / 15%."""
    return mlvae_tf.data.digits_splits(seed=0)


@pytest.fixture(scope="session")
def trained(digits_split):
    """One ML-VAE trained on the digits for the session's end-to-end tests, with its history and
    the validation loss before training."""
    keras.utils.set_random_seed(0)
    x, labels = digits_split["train"]
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=8, max_group_size=10, seed=0)
    val = mlvae_tf.data.grouped_dataset(*digits_split["val"], groups_per_batch=8, max_group_size=10, shuffle=False)
    model = mlvae_tf.MLVAE(input_shape=INPUT_SHAPE, content_dim=7, style_dim=STYLE_DIM,
                           hidden_units=128, likelihood="bernoulli", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    history = model.fit(ds, validation_data=val, epochs=TRAIN_EPOCHS, verbose=0)
    return model, history.history, before


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The session's trained model exported with `python -m export`'s function: (model, root folder)."""
    from export import export_model

    out = tmp_path_factory.mktemp("savedmodels")
    export_model(trained[0], out, "digits")
    return trained[0], out / "digits"
