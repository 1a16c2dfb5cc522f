"""The paper's quantitative protocol (section 4; supplement sections 3.1 and 3.2): how much the
content and the style latents tell about the class, as a function of the accumulated evidence k.

As in the supplement, the classifier's training, validation and test sets are all made of test
images, K per class each, drawn anew in every trial. The classifier's training and validation
features accumulate the content over the K images of each class; its test features over groups
of k <= K images of a class (k = 1: no group information). The features are posterior samples
(eq. 4 of the supplement) or posterior means.

It consumes a representation function, so it works the same on a Keras model, a SavedModel or an
ONNX session: `represent(images [N, ...], group_ids int32 [N]) -> {"content_mean",
"content_log_var": [G, d], "style_mean", "style_log_var": [N, d]}` (the `encode_groups` contract).
"""

import copy
import warnings

import numpy as np

__all__ = ["FEATURES", "conditional_entropy_bits", "accumulated_features", "compute_protocol", "largest_K",
           "check_disjoint", "whole_latent"]

PARTS = ("content", "style")
FEATURES = ("sample", "mean")
SETS = ("train", "validation", "test")


def conditional_entropy_bits(labels, probabilities):
    """Cross-entropy `-(1/N) sum_i log2 r(y_i | f_i)` in bits: the upper bound on H(Y | features)
    that the paper reports (supplement 3.2).

    Args:
        labels: int `[N]` in `[0, C)`; probabilities: `[N, C]` predicted class probabilities.
    """
    p = np.clip(np.asarray(probabilities, np.float64)[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.mean(np.log2(p)))


def _groups_of_k(labels, k, rng):
    """Random groups of exactly `k` images of one class, covering every image once as an owner.

    Each class's images are shuffled and cut into groups of `k`; each of the `n mod k` images left
    over gets a group of its own with `k - 1` other images of its class drawn at random, so every
    image has exactly `k` images of evidence.

    Returns:
        `(rows [M], group_ids [M], own_row [N])`: the images to represent (indices, with repeats),
        their groups, and for image i the row that stands for it.
    """
    rows, group_ids, own_row = [], [], np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < k:
            raise ValueError(f"class {label} has {len(members)} images, fewer than k={k}.")
        full = len(members) - len(members) % k
        for start in range(0, full, k):  # groups of k: every member stands for itself
            own_row[members[start:start + k]] = len(rows) + np.arange(k)
            rows.extend(members[start:start + k])
            group_ids.extend([len(group_ids) // k] * k)
        for image in members[full:]:  # a leftover: itself and k - 1 other images of its class
            own_row[image] = len(rows)
            rows.extend([image, *rng.choice(np.setdiff1d(members, [image]), k - 1, replace=False)])
            group_ids.extend([len(group_ids) // k] * k)
    return np.asarray(rows, np.int64), np.asarray(group_ids, np.int32), own_row


def accumulated_features(represent, images, labels, k, rng, features="sample"):
    """Content and style features of every image, with content accumulated over random groups
    of exactly `k` images of its class (see `_groups_of_k`).

    Args:
        represent: the `encode_groups` contract (module docstring).
        images: `[N, ...]`; labels: int `[N]`; k: evidence per group, >= 1.
        rng: a `np.random.Generator` (groups, and the samples' noise).
        features: "sample" (one draw from each image's group posterior and style posterior,
            eq. 4 of the supplement) or "mean" (the posterior means).

    Returns:
        `(content [N, content_dim], style [N, style_dim])`, row i for image i.
    """
    if features not in FEATURES:
        raise ValueError(f"`features` must be one of {FEATURES}, got {features!r}.")
    rows, group_ids, own_row = _groups_of_k(np.asarray(labels), int(k), rng)
    out = {name: np.asarray(value, np.float64) for name, value in represent(images[rows], group_ids).items()}
    group = group_ids[own_row]  # [N]
    content = out["content_mean"][group]
    style = out["style_mean"][own_row]
    if features == "sample":
        content = content + np.exp(0.5 * out["content_log_var"][group]) * rng.standard_normal(content.shape)
        style = style + np.exp(0.5 * out["style_log_var"][own_row]) * rng.standard_normal(style.shape)
    return content, style


def largest_K(labels, limit=100):
    """The largest K <= `limit` for which every class has the 3K images of the three sets."""
    return int(min(limit, np.bincount(np.asarray(labels))[np.unique(labels)].min() // 3))


def check_disjoint(train, test, unseen_groups=False):
    """Refuses an evaluation on images the model was trained on.

    Args:
        train, test: `(images, labels)` of the model's training data and of the evaluation.
        unseen_groups: the groups of `test` must also be absent from `train`.

    Raises:
        ValueError: a test image is a training image (byte for byte), or with `unseen_groups`, a
            test group is a training group.
    """
    def keys(x):
        x = np.ascontiguousarray(x)
        return x.reshape(len(x), -1).view(np.dtype((np.void, x[0].nbytes))).ravel()

    overlap = int(np.isin(keys(test[0]), keys(train[0])).sum())
    if overlap:
        raise ValueError(f"{overlap} of the {len(test[1])} test images are training images of the model: evaluate "
                         "on the run's own split (its config.yaml: data.name, data.seed).")
    if unseen_groups:
        seen = np.intersect1d(np.unique(test[1]), np.unique(train[1]))
        if seen.size:
            raise ValueError(f"{seen.size} test groups (e.g. {seen[0]}) were seen in training, but the groups "
                             "must be unseen.")


class _Classifier:
    """Supplement 3.1: 256 tanh units, a softmax output, the cross-entropy, Adam(1e-3, 0.9, 0.999,
    1e-8); trained an epoch at a time, keeping the epoch of lowest validation cross-entropy
    (early stopping with `patience`)."""

    def __init__(self, classes, seed, max_epochs=300, patience=20):
        from sklearn.neural_network import MLPClassifier

        self.classes, self.max_epochs, self.patience = classes, max_epochs, patience
        self.network = MLPClassifier(hidden_layer_sizes=(256,), activation="tanh", solver="adam",
                                     learning_rate_init=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, alpha=0.0,
                                     random_state=seed)

    def fit(self, x, y, x_val, y_val):
        best, best_loss, waited, self.epochs = copy.deepcopy(self.network), np.inf, 0, 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            for epoch in range(self.max_epochs):
                self.network.partial_fit(x, y, classes=self.classes)
                loss = conditional_entropy_bits(np.searchsorted(self.classes, y_val), self.network.predict_proba(x_val))
                if loss < best_loss - 1e-6:
                    best, best_loss, waited, self.epochs = copy.deepcopy(self.network), loss, 0, epoch + 1
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
        self.network = best
        return self

    def predict_proba(self, x):
        return self.network.predict_proba(x)


def _check_test(test):
    """`test` as `(images [N, ...], int labels [N])`, or a `ValueError` that says what is wrong."""
    if not isinstance(test, (tuple, list)) or len(test) != 2:
        raise ValueError(f"`test` must be a pair (images, labels), got {type(test).__name__}.")
    images, labels = np.asarray(test[0]), np.asarray(test[1])
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or not len(labels):
        raise ValueError(f"`test`: labels must be a non-empty vector of integers, got dtype {labels.dtype} and "
                         f"shape {labels.shape}.")
    if images.ndim < 2 or len(images) != len(labels):
        raise ValueError(f"`test`: images must be an array [N, ...] with one label each; got images of shape "
                         f"{images.shape} and {len(labels)} labels.")
    return images, labels


def compute_protocol(represent, test, K=None, ks=(1, 2, 5, 10), trials=5, features="sample", seed=0,
                     max_epochs=300, patience=20, progress=True):
    """Classifier accuracy and conditional entropy of content and style features against k.

    In each trial, `3K` test images of every class are drawn (without overlap between trials
    while there are enough) and split into the classifier's training, validation and test sets
    of K per class. A classifier (supplement 3.1) is trained on content features, another on style
    features; training and validation features accumulate the content over the K images of each
    class, test features over random groups of k images of a class. Classes with fewer than 3K
    images are left out (listed in `settings`).

    Args:
        represent: the `encode_groups` contract (module docstring).
        test: `(images, labels)`, the test images (seen or unseen groups alike); labels int.
        K: images per class in each set; default `largest_K(labels)` (at most the paper's 100).
        ks: the evidence sizes tested, each in `[1, K]`.
        trials: number of trials (mean and std are reported).
        features: "sample" (eq. 4 of the supplement) or "mean".
        max_epochs, patience: the classifier's training (early stopping on the validation set).

    Returns:
        dict with `content_accuracy`, `style_accuracy`, `content_cond_entropy_bits`,
        `style_cond_entropy_bits` (each `{k: {"mean", "std"}}`), `chance_accuracy` and `settings`
        (every choice above, the classes used and left out, the set sizes).
    """
    from mlvae_tf import validation
    from mlvae_tf.progress import progress_bar

    images, labels = _check_test(test)
    trials = validation.check_positive_int(trials, "trials")
    K = largest_K(labels) if K is None else int(K)
    ks = sorted(set(int(k) for k in ks))
    if features not in FEATURES:
        raise ValueError(f"`features` must be one of {FEATURES}, got {features!r}.")
    if K < 1 or not ks or ks[0] < 1 or ks[-1] > K:
        raise ValueError(f"`ks` must lie in [1, K] with K >= 1; got ks={ks}, K={K}.")
    counts = {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))}
    classes = np.array([c for c, n in counts.items() if n >= 3 * K])
    left_out = sorted(c for c, n in counts.items() if n < 3 * K)
    if len(classes) < 2:
        raise ValueError(f"K={K} needs 3K={3 * K} test images in at least two classes; the largest K that every "
                         f"class allows is {largest_K(labels)}.")
    scores = {f"{part}_{metric}": {k: [] for k in ks} for part in PARTS for metric in ("accuracy", "cond_entropy_bits")}
    rng = np.random.default_rng(seed)
    orders = {c: rng.permutation(np.flatnonzero(labels == c)) for c in classes}
    disjoint = all(len(order) >= 3 * K * trials for order in orders.values())
    epochs = []
    bar = progress_bar(trials, unit_name="trial") if progress else None
    for trial in range(trials):
        trial_rng = np.random.default_rng([seed, trial])
        chosen = {c: (order[3 * K * trial:3 * K * (trial + 1)] if disjoint else trial_rng.permutation(order)[:3 * K])
                  for c, order in orders.items()}
        sets = {name: np.concatenate([chosen[c][i * K:(i + 1) * K] for c in classes]) for i, name in enumerate(SETS)}
        fit = {name: dict(zip(PARTS, accumulated_features(represent, images[sets[name]], labels[sets[name]], K,
                                                          trial_rng, features))) for name in ("train", "validation")}
        classifiers = {part: _Classifier(classes, seed + trial, max_epochs, patience).fit(
            fit["train"][part], labels[sets["train"]], fit["validation"][part], labels[sets["validation"]])
            for part in PARTS}
        epochs += [c.epochs for c in classifiers.values()]
        target = np.searchsorted(classes, labels[sets["test"]])
        for k in ks:  # one random grouping of the test images per k, shared by both classifiers
            test_features = dict(zip(PARTS, accumulated_features(represent, images[sets["test"]],
                                                                 labels[sets["test"]], k, trial_rng, features)))
            for part, classifier in classifiers.items():
                probabilities = classifier.predict_proba(test_features[part])
                scores[f"{part}_accuracy"][k].append(float(np.mean(probabilities.argmax(1) == target)))
                scores[f"{part}_cond_entropy_bits"][k].append(conditional_entropy_bits(target, probabilities))
        if bar is not None:
            bar.update(trial + 1, [(f"{part} k={ks[0]}", scores[f"{part}_accuracy"][ks[0]][-1]) for part in PARTS])
    result = {name: {str(k): {"mean": float(np.mean(v)), "std": float(np.std(v))} for k, v in per_k.items()}
              for name, per_k in scores.items()}
    result["chance_accuracy"] = 1.0 / len(classes)
    result["settings"] = {
        "protocol": "supplement 3.1: train, validation and test sets of K test images per class",
        "K": K, "ks": ks, "trials": trials, "features": features, "seed": seed,
        "images_per_set": int(K * len(classes)), "classes": [int(c) for c in classes],
        "classes_left_out": left_out, "disjoint_trials": bool(disjoint),
        "classifier": "256 tanh, softmax, cross-entropy, Adam(1e-3, 0.9, 0.999, 1e-8), early stopping on validation",
        "max_epochs": max_epochs, "patience": patience, "classifier_epochs_median": float(np.median(epochs)),
    }
    return result


def whole_latent(model):
    """The representation of the whole latent `(content, style)` accumulated over each group with
    the product of Normals: what the paper does with the i.i.d. VAE's latent (Figure 6c). Its
    "content" is the accumulated whole latent, its "style" each image's own whole latent.

    Returns:
        a `represent` function (module docstring).
    """
    from mlvae_tf import grouping

    def represent(images, group_ids):
        encoded = model.encode(images)
        mean = np.concatenate([np.asarray(encoded["content_mean"]), np.asarray(encoded["style_mean"])], 1)
        log_var = np.concatenate([np.asarray(encoded["content_log_var"]), np.asarray(encoded["style_log_var"])], 1)
        group_mean, group_log_var = grouping.product_of_normals(mean, log_var, np.asarray(group_ids, np.int32),
                                                                int(np.max(group_ids)) + 1)
        return {"content_mean": np.asarray(group_mean), "content_log_var": np.asarray(group_log_var),
                "style_mean": mean, "style_log_var": log_var}

    return represent
