"""Evaluation per latent for models with several content latents (`mlvae_tf.MultiLevelVAE`):
which ground-truth factor each latent holds, and a swap grid that changes one latent alone."""

import numpy as np

__all__ = ["latents", "latent_factor_accuracy", "latent_swap_grid"]


def latents(model, images):
    """Single-image posterior means of every latent: `{grouping: [N, d_k], "style": [N, style_dim]}`."""
    encoded = model.encode(images)
    blocks = {name: np.asarray(value) for name, value in model.split(np.asarray(encoded["content_mean"])).items()}
    return {**blocks, "style": np.asarray(encoded["style_mean"])}


def latent_factor_accuracy(model, train, test):
    """The latent x factor matrix: test accuracy of a logistic regression from each latent's
    single-image posterior means to each ground-truth factor, fitted on the `train` images.

    A latent that holds a factor predicts it well above chance; one that is free of it reads near
    chance. With plenty of labelled images (all of `train`) this is the strict reading of
    leakage, as `linear_probe_accuracy` is for one latent.

    Args:
        model: a `MultiLevelVAE` (`encode`, `split`).
        train, test: `(images, factors)`, `factors` a dict `{factor: int labels [N]}`.

    Returns:
        dict `{"accuracy": {latent: {factor: accuracy}}, "chance": {factor: majority-class rate}}`.
    """
    from sklearn.linear_model import LogisticRegression

    features = {"train": latents(model, train[0]), "test": latents(model, test[0])}
    accuracy = {}
    for latent in features["train"]:
        accuracy[latent] = {}
        for factor, labels in train[1].items():
            classifier = LogisticRegression(max_iter=2000).fit(features["train"][latent], labels)
            accuracy[latent][factor] = float(classifier.score(features["test"][latent], test[1][factor]))
    chance = {factor: float(np.bincount(labels).max() / len(labels)) for factor, labels in test[1].items()}
    return {"accuracy": accuracy, "chance": chance}


def latent_swap_grid(model, images, latent):
    """The swap grid of one latent: tile (i + 1, j + 1) decodes image i's latents with `latent`
    taken from image j (first row and column: the inputs). Posterior means are decoded.

    Args:
        model: a `MultiLevelVAE`; images: `[n, *input_shape]`; latent: a grouping or "style".

    Returns:
        `tiles`, rows of `[H, W, C]` arrays (None at the corner), for `tile` or `save_tiles`.
    """
    images = np.asarray(images, np.float32)
    blocks = latents(model, images)
    if latent not in blocks:
        raise ValueError(f"`latent` must be one of {sorted(blocks)}, got {latent!r}.")
    n = len(images)
    rows = []
    for i in range(n):
        swapped = {name: np.repeat(value[i : i + 1], n, axis=0) for name, value in blocks.items()}
        swapped[latent] = blocks[latent]  # column j: image j's
        content = np.concatenate([swapped[name] for name in model.groupings], axis=1)
        rows.append(np.asarray(model.decode(content, swapped["style"])))
    return [[None] + list(images)] + [[images[i]] + list(rows[i]) for i in range(n)]
