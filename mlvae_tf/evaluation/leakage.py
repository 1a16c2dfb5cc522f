"""Leakage and collapse checks: does the style know the group, does the decoder use the content?"""

import numpy as np

__all__ = ["compute_leakage", "linear_probe_accuracy"]


def linear_probe_accuracy(model, train, test, name):
    """Test accuracy of a logistic regression on single-image posterior means `name` (e.g.
    "style_mean"), fitted on the `train` images: how much of the class a latent holds when the
    classifier has plenty of labelled images, unlike the paper's protocol (K per class).

    Args:
        model: anything with `encode`; train, test: `(images, labels)`.
    """
    from sklearn.linear_model import LogisticRegression

    features = {part: np.asarray(model.encode(images)[name]) for part, (images, _) in (("train", train), ("test", test))}
    classifier = LogisticRegression(max_iter=3000).fit(features["train"], train[1])
    return float(classifier.score(features["test"], test[1]))


def compute_leakage(model, train, test, style_accuracy, chance_accuracy, pairs=200, seed=0):
    """Reports how far the style classifier is above chance, the average KL of the content
    posterior per dimension (near 0: collapsed dimensions), and how often the decoded class of a
    swap `decode(content of a, style of b)` (a, b of different classes) follows a's class, judged
    by a logistic regression trained on the raw `train` images.

    Args:
        model: anything with `encode` and `decode`.
        train, test: `(images, labels)`.
        style_accuracy: the protocol's style accuracy at k = 1; chance_accuracy: 1 / classes.

    Returns:
        dict: `style_accuracy_above_chance`, `content_kl_per_dim` (list), `swap_follows_content`,
        `swap_follows_style`, `warnings` (list of strings).
    """
    from sklearn.linear_model import LogisticRegression

    x, labels = test
    encoded = {name: np.asarray(value) for name, value in model.encode(x).items()}
    mean, log_var = encoded["content_mean"], encoded["content_log_var"]
    kl_per_dim = 0.5 * np.mean(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=0)
    judge = LogisticRegression(max_iter=2000).fit(train[0].reshape(len(train[0]), -1), train[1])
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(x), size=(2, pairs))
    keep = labels[a] != labels[b]
    a, b = a[keep], b[keep]
    swapped = np.asarray(model.decode(encoded["content_mean"][a], encoded["style_mean"][b]))
    predicted = judge.predict(swapped.reshape(len(swapped), -1))
    follows_content = float(np.mean(predicted == labels[a]))
    result = {
        "style_accuracy_above_chance": float(style_accuracy - chance_accuracy),
        "content_kl_per_dim": kl_per_dim.tolist(),
        "swap_follows_content": follows_content,
        "swap_follows_style": float(np.mean(predicted == labels[b])),
        "warnings": [],
    }
    if follows_content <= result["swap_follows_style"]:
        result["warnings"].append("the decoder ignores the content: swapped images take the class of the style")
    if style_accuracy - chance_accuracy > 0.4 * (1.0 - chance_accuracy):
        result["warnings"].append(f"the style leaks the group: style accuracy {style_accuracy:.2f} vs chance "
                                  f"{chance_accuracy:.2f}")
    return result
