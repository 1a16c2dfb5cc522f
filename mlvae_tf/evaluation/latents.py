"""Evaluation per latent for models with several content latents (`mlvae_tf.MultiLevelVAE`):
which ground-truth factor each latent holds, and a swap grid that changes one latent alone."""

import numpy as np

__all__ = ["latents", "probe_accuracy", "latent_factor_accuracy", "latent_swap_grid", "PROBES"]


def latents(model, images, log_var=False):
    """Single-image posterior means of every latent: `{grouping: [N, d_k], "style": [N, style_dim]}`;
    with `log_var`, `(means, log-variances)` of that form."""
    encoded = model.encode(images)
    means = {**model.split(np.asarray(encoded["content_mean"])), "style": np.asarray(encoded["style_mean"])}
    if not log_var:
        return means
    return means, {**model.split(np.asarray(encoded["content_log_var"])), "style": np.asarray(encoded["style_log_var"])}


def _accumulated(mean, log_var, labels, k, rng):
    """Each image's mean of the product of Normals of the `k` images (itself included) of its group
    when the images of each label are cut at random into groups of `k` (the last one larger): the
    content the ML-VAE reads from k images that share a factor's value. `[N, d]`."""
    from mlvae_tf.posterior import posterior, statistics

    out = np.empty_like(mean)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for group in np.array_split(members, max(1, len(members) // k)):
            out[group] = posterior(statistics(mean[group], log_var[group]))[0]
    return out


PROBES = ("linear", "mlp")


def probe_accuracy(train_features, train_labels, test_features, test_labels, probe="linear", seed=0):
    """Test accuracy of a classifier (the probe) fitted on `train_features` `[N, d]` to
    `train_labels` `[N]`: "linear", a logistic regression; or "mlp", scikit-learn's
    `MLPClassifier` with two hidden layers of 128 units (early stopping on a tenth of the training
    rows; `seed` its weights'). The solver's convergence warnings are silenced: the accuracy is the
    measurement, not the solver's tolerance."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if probe not in PROBES:
        raise ValueError(f"`probe` must be one of {PROBES}, got {probe!r}.")
    classifier = (LogisticRegression(max_iter=2000) if probe == "linear" else
                  MLPClassifier((128, 128), early_stopping=True, max_iter=500, random_state=seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(train_features, train_labels)
    return float(classifier.score(test_features, test_labels))


def latent_factor_accuracy(model, train, test, k=1, seed=0, probe="linear"):
    """The latent x factor matrix: test accuracy of a classifier (the probe) from each latent's
    posterior means to each ground-truth factor, fitted on the `train` images.

    A latent that holds a factor predicts it well above chance; one that is free of it reads near
    chance. With plenty of labelled images (all of `train`) this is the strict reading of
    leakage, as `linear_probe_accuracy` is for one latent. With `k > 1`, a content latent is read
    as the paper's protocol reads content: accumulated over k images that share the value of the
    factor being predicted (the product of their Normals), in the training and the test images
    alike; the style stays a single image's.

    Args:
        model: a `MultiLevelVAE` (`encode`, `split`).
        train, test: `(images, factors)`, `factors` a dict `{factor: int labels [N]}`.
        k: images of evidence per content reading.
        seed: seed of the groups of k (and of the "mlp" probe's weights).
        probe: "linear", a logistic regression; or "mlp", scikit-learn's `MLPClassifier` with two
            hidden layers of 128 units (early stopping on a tenth of `train`), the stricter reading:
            it also finds what a latent holds in a form no hyperplane separates (a style that
            keeps the shape, say).

    Returns:
        dict `{"accuracy": {latent: {factor: accuracy}}, "chance": {factor: majority-class rate}}`.
    """
    if probe not in PROBES:
        raise ValueError(f"`probe` must be one of {PROBES}, got {probe!r}.")
    rng = np.random.default_rng(seed)
    encoded = {"train": latents(model, train[0], log_var=True), "test": latents(model, test[0], log_var=True)}
    factors = {"train": train[1], "test": test[1]}
    accuracy = {}
    for latent in encoded["train"][0]:
        accuracy[latent] = {}
        for factor in train[1]:
            features = {}
            for part, (means, log_vars) in encoded.items():
                features[part] = means[latent]
                if k > 1 and latent != "style":
                    features[part] = _accumulated(means[latent], log_vars[latent], factors[part][factor], k, rng)
            accuracy[latent][factor] = probe_accuracy(features["train"], train[1][factor], features["test"],
                                                      test[1][factor], probe, seed)
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
