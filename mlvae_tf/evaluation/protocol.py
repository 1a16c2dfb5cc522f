"""The paper's quantitative protocol (section 4, supplement 3): how much the content and the style
latents tell about the group, as a function of the accumulated evidence k.

It consumes a representation function, so it works the same on a Keras model, a SavedModel or an
ONNX session: `represent(images [N, ...], group_ids int32 [N]) -> {"content_mean": [G, d],
"style_mean": [N, d], ...}` (the `encode_groups` contract).
"""

import warnings

import numpy as np

__all__ = ["conditional_entropy_bits", "accumulated_features", "compute_protocol", "split_within_groups"]

PARTS = ("content", "style")


def conditional_entropy_bits(labels, probabilities):
    """Cross-entropy `-(1/N) sum_i log2 r(y_i | f_i)` in bits: the upper bound on H(Y | features)
    that the paper reports (supplement 3.2).

    Args:
        labels: int `[N]` in `[0, C)`; probabilities: `[N, C]` predicted class probabilities.
    """
    p = np.clip(np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.mean(np.log2(p)))


def accumulated_features(represent, images, labels, k, rng):
    """Features of every image with content accumulated over random groups of `k` images of the
    same class (k = 1: no group information); leftover images of a class form a smaller group.

    Returns:
        `(content [N, d], style [N, d])`, row i for image i.
    """
    group_ids = np.empty(len(labels), np.int32)
    next_group = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        group_ids[members] = next_group + np.arange(len(members)) // k
        next_group += -(-len(members) // k)
    out = represent(images, group_ids)
    return np.asarray(out["content_mean"])[group_ids], np.asarray(out["style_mean"])


def split_within_groups(part, fraction=0.5, seed=0):
    """Splits the images of every group of `part` into two parts, for unseen groups: the model
    never saw these groups, so the classifier is trained and tested on the test set's own images
    (supplement 3.1), each group's images divided between its training and test sets.

    Returns:
        `(classifier_train, classifier_test)`, each `(images, labels)`.
    """
    images, labels = part
    rng = np.random.default_rng(seed)
    first = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise ValueError(f"group {label} has {len(members)} image; unseen-group evaluation needs >= 2 per group.")
        first[members[: max(1, min(len(members) - 1, round(fraction * len(members))))]] = True
    return (images[first], labels[first]), (images[~first], labels[~first])


def _classifier(seed, max_iter):
    from sklearn.neural_network import MLPClassifier

    # Supplement 3.1: 256 tanh units, softmax output, cross-entropy, Adam(1e-3, 0.9, 0.999, 1e-8).
    return MLPClassifier(hidden_layer_sizes=(256,), activation="tanh", solver="adam", learning_rate_init=1e-3,
                         beta_1=0.9, beta_2=0.999, epsilon=1e-8, max_iter=max_iter, random_state=seed)


def compute_protocol(represent, train, test, ks=(1, 2, 5, 10), K=None, trials=5, seed=0, max_iter=300,
                     progress=True):
    """Classifier accuracy and conditional entropy of content and style features against k.

    For each trial, a classifier (supplement 3.1) is trained on features of the `train` images,
    with content accumulated over groups of `K` images per class, once on content and once on
    style; it is tested on the `test` images with content accumulated over groups of `k` images.
    Trials differ in the random groups. For unseen groups (classes absent from training, as
    MS-Celeb-1M identities), pass two disjoint parts of the test set's images as `train` and `test`.

    Args:
        represent: the `encode_groups` contract (see the module docstring).
        train, test: `(images, labels)` pairs; labels int.
        ks: the evidence sizes to test. K: the training evidence size (default `max(ks)`).
        trials: number of trials (mean and std are reported).

    Returns:
        dict with `content_accuracy`, `style_accuracy`, `content_cond_entropy_bits`,
        `style_cond_entropy_bits` (each `{k: {"mean", "std"}}`), `chance_accuracy` and `settings`.
    """
    import keras

    ks = sorted(set(int(k) for k in ks))
    K = int(K or max(ks))
    if ks[0] < 1 or K < ks[-1]:
        raise ValueError(f"`ks` must be >= 1 and <= K={K}, got {ks}.")
    classes = np.unique(train[1])
    test_classes = np.unique(test[1])
    if not np.isin(test_classes, classes).all():
        raise ValueError("every test class must appear in `train`; for unseen groups split the test set in two.")
    scores = {f"{part}_{metric}": {k: [] for k in ks} for part in PARTS
              for metric in ("accuracy", "cond_entropy_bits")}
    bar = keras.utils.Progbar(trials, unit_name="trial") if progress else None
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial])
        features = dict(zip(PARTS, accumulated_features(represent, *train, K, rng)))
        classifiers = {}
        with warnings.catch_warnings():  # a capped number of Adam epochs, as in the paper
            warnings.simplefilter("ignore", category=UserWarning)
            for part in PARTS:
                classifiers[part] = _classifier(seed + trial, max_iter).fit(features[part], train[1])
        for k in ks:
            # One random grouping of the test images per k, shared by the content and style classifiers.
            test_features = dict(zip(PARTS, accumulated_features(represent, *test, k, rng)))
            for part, classifier in classifiers.items():
                probabilities = np.zeros((len(test[1]), int(classes.max()) + 1))
                probabilities[:, classifier.classes_] = classifier.predict_proba(test_features[part])
                scores[f"{part}_accuracy"][k].append(float(np.mean(probabilities.argmax(1) == test[1])))
                scores[f"{part}_cond_entropy_bits"][k].append(conditional_entropy_bits(test[1], probabilities))
        if bar is not None:
            bar.update(trial + 1)
    result = {name: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in per_k.items()}
              for name, per_k in scores.items()}
    result["chance_accuracy"] = 1.0 / len(test_classes)
    result["settings"] = {"ks": ks, "K": K, "trials": trials, "seed": seed, "classifier": "256 tanh, softmax, Adam 1e-3",
                          "train_images": int(len(train[1])), "test_images": int(len(test[1]))}
    return result
