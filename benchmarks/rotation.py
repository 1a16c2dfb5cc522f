"""Where the grouped shapes' rotation goes: a VAE or an ML-VAE grouped by shape, read by MLP probes.

python -m benchmarks.rotation [--model mlvae|vae] [--style-dim 8] [--epochs 80] [--probe-images 6000]

Renders 12,000 grouped shapes (32x32, seed 0; the split of `benchmarks.groupings`), trains the
model (content 8, style `--style-dim`; a VAE's latent is both, per observation) on batches of 16
shape groups of at most 10, and reads the rotation from the posterior means with scikit-learn's
MLP probe (two layers of 128 units), trained on `--probe-images` training images and on 2,000,
scored on the 2,000 test images: on every shape (the pixels' ceiling is about 0.65: circles and
rings do not show their rotation) and on the squares alone (ceiling 0.99), from the whole
representation, the content and the style. Prints one JSON line.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.data.grouped_shapes import SHAPES, generate  # noqa: E402

MODELS = {"mlvae": mlvae_tf.MLVAE, "vae": mlvae_tf.VAE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlvae", choices=tuple(MODELS))
    parser.add_argument("--style-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--probe-images", type=int, default=6000, help="training images of the larger probe")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    images, factors = generate(12_000, image_size=32, seed=0)
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[: len(order) // 6], order[len(order) // 6:]
    ds = mlvae_tf.data.grouped_dataset(images[train], factors["shape"][train], groups_per_batch=16, max_group_size=10,
                                       seed=0)
    model = MODELS[args.model](input_shape=images.shape[1:], content_dim=8, style_dim=args.style_dim, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    start = time.time()
    history = model.fit(ds, epochs=args.epochs, verbose=0).history
    result = {"model": args.model, "style_dim": args.style_dim, "epochs": args.epochs,
              "negative_elbo": round(history["loss"][-1], 1), "train_s": round(time.time() - start)}

    def means(index, part):
        encoded = model.encode(images[index])
        parts = ("content_mean", "style_mean") if part == "both" else (part,)
        return np.concatenate([np.asarray(encoded[name]) for name in parts], 1)

    def read(train_index, test_index, part):
        probe = MLPClassifier((128, 128), max_iter=500, early_stopping=True, random_state=0)
        probe.fit(means(train_index, part), factors["rotation"][train_index])
        return round(probe.score(means(test_index, part), factors["rotation"][test_index]), 3)

    squares = SHAPES.index("square")
    for size in (args.probe_images, 2000):
        result[f"all_shapes_{size}"] = read(train[:size], test, "both")
    probe_squares = train[: args.probe_images][factors["shape"][train[: args.probe_images]] == squares]
    test_squares = test[factors["shape"][test] == squares]
    for part in ("both", "content_mean", "style_mean"):
        result[f"squares_{part}_{args.probe_images}"] = read(probe_squares, test_squares, part)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
