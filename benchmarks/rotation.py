"""Where the grouped shapes' rotation goes: a VAE or an ML-VAE grouped by shape, read by MLP probes.

python -m benchmarks.rotation [--model mlvae|vae|ideal] [--style-dim 8] [--epochs 80] [--probe-images 6000]

Renders 12,000 grouped shapes (32x32, seed 0; the split of `benchmarks.groupings`), trains the
model (content 8, style `--style-dim`; a VAE's latent is both, per observation) on batches of 16
shape groups of at most 10, and reads the posterior means with scikit-learn's MLP probe (two
layers of 128 units), trained on `--probe-images` training images (and on 2,000), scored on the
2,000 test images: the rotation on every shape (the pixels' ceiling is about 0.65: circles and
rings do not show their rotation) and on the squares alone (ceiling 0.99), from the whole
representation, the content and the style; and the shape from the style. `--model ideal` trains
nothing and reads `ideal_representation`, the split the ML-VAE aims at, built from the true
factors: its style's shape is the least that a style holding the rotation gives away. Prints one
JSON line.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.data.grouped_shapes import FACTORS, SHAPES, generate  # noqa: E402
from mlvae_tf.evaluation import probe_accuracy  # noqa: E402

MODELS = {"mlvae": mlvae_tf.MLVAE, "vae": mlvae_tf.VAE}
HIDDEN_ROTATION = (SHAPES.index("circle"), SHAPES.index("ring"))  # their rotation does not show


def ideal_representation(factors):
    """The split of an ML-VAE grouped by shape, made from the true factors (one-hot codes).

    The content is the shape; the style is the scale, the position and the rotation where it shows,
    with a ninth rotation value on circles and rings (whose images do not tell it). So the style
    tells the shape only as "a circle or a ring, or not": an MLP probe reads it at about
    2/5 x 1/2 + 3/5 x 1/3 = 0.40 (chance 0.2).

    Args:
        factors: dict of int `[N]` arrays, `generate`'s.

    Returns:
        dict `content_mean` float32 `[N, 5]`, `style_mean` float32 `[N, 4 + 8 + 8 + 9]`.
    """
    def one_hot(values, size):
        return np.eye(size, dtype=np.float32)[values]

    rotation = np.where(np.isin(factors["shape"], HIDDEN_ROTATION), FACTORS["rotation"], factors["rotation"])
    style = [one_hot(factors[name], FACTORS[name]) for name in ("scale", "position_x", "position_y")]
    return {"content_mean": one_hot(factors["shape"], FACTORS["shape"]),
            "style_mean": np.concatenate(style + [one_hot(rotation, FACTORS["rotation"] + 1)], 1)}


def mlp_accuracy(features, labels, train, test):
    """`mlvae_tf.evaluation.probe_accuracy`'s MLP probe fitted on the rows `train`, scored on `test`."""
    return round(probe_accuracy(features[train], labels[train], features[test], labels[test], probe="mlp"), 3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlvae", choices=(*MODELS, "ideal"))
    parser.add_argument("--style-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--probe-images", type=int, default=6000, help="training images of the larger probe")
    args = parser.parse_args(argv)
    if not 0 < args.probe_images <= 10_000:
        parser.error(f"--probe-images must be in [1, 10000] (the training images), got {args.probe_images}")
    keras.utils.set_random_seed(0)
    images, factors = generate(12_000, image_size=32, seed=0)
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[: len(order) // 6], order[len(order) // 6:]
    if args.model == "ideal":
        encoded = ideal_representation(factors)
        result = {"model": "ideal"}
    else:
        ds = mlvae_tf.data.grouped_dataset(images[train], factors["shape"][train], groups_per_batch=16,
                                           max_group_size=10, seed=0)
        model = MODELS[args.model](input_shape=images.shape[1:], content_dim=8, style_dim=args.style_dim, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        start = time.time()
        history = model.fit(ds, epochs=args.epochs, verbose=0).history
        result = {"model": args.model, "style_dim": args.style_dim, "epochs": args.epochs,
                  "negative_elbo": round(history["loss"][-1], 1), "train_s": round(time.time() - start)}
        encoded = {name: np.asarray(value) for name, value in model.encode(images).items()}
    parts = {"both": np.concatenate([encoded["content_mean"], encoded["style_mean"]], 1),
             "content_mean": encoded["content_mean"], "style_mean": encoded["style_mean"]}
    rotation = factors["rotation"]
    for size in (args.probe_images, 2000):
        result[f"all_shapes_{size}"] = mlp_accuracy(parts["both"], rotation, train[:size], test)
    squares = SHAPES.index("square")
    probe_squares = train[: args.probe_images][factors["shape"][train[: args.probe_images]] == squares]
    test_squares = test[factors["shape"][test] == squares]
    for part, features in parts.items():
        result[f"squares_{part}_{args.probe_images}"] = mlp_accuracy(features, rotation, probe_squares, test_squares)
    result[f"shape_from_style_{args.probe_images}"] = mlp_accuracy(
        parts["style_mean"], factors["shape"], train[: args.probe_images], test)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
