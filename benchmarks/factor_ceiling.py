"""How well each factor of the grouped shapes can be read from the pixels at all: a supervised CNN.

python -m benchmarks.factor_ceiling [--factors shape,rotation] [--examples 12000] [--epochs 15]

The latent x factor matrices of `benchmarks.groupings` read each factor from a latent; this is the
ceiling they are read against. On the same images and the same split (`generate(12000, 32, seed=0)`,
a random sixth held out, seed 0), a small CNN (three 3x3 convolutions of 32/64/64 channels with
max pooling, then 128 units) is trained on the 10,000 training images with the labels of one factor
(early stopping on a tenth of them) and tested on 2,000 held-out images. Prints, per factor, its
test accuracy and the accuracy on each shape's images (a circle's or a ring's rotation does not
show, so the rotation's ceiling is about 3/5 + 2/5 x 1/8).
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from mlvae_tf.data.grouped_shapes import FACTORS, SHAPES, generate  # noqa: E402


def classifier(input_shape, classes):
    """The supervised CNN: logits `[N, classes]`."""
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(32, 3, activation="relu", padding="same"), keras.layers.MaxPool2D(),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"), keras.layers.MaxPool2D(),
        keras.layers.Conv2D(64, 3, activation="relu", padding="same"), keras.layers.GlobalMaxPool2D(),
        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(classes)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default=",".join(FACTORS), help="comma-separated, of " + ", ".join(FACTORS))
    parser.add_argument("--examples", type=int, default=12_000)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args(argv)
    factors_wanted = args.factors.split(",")
    unknown = sorted(set(factors_wanted) - set(FACTORS))
    if unknown:
        parser.error(f"--factors: unknown {unknown}; expected some of {list(FACTORS)}")
    images, factors = generate(args.examples, image_size=32, seed=0)
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[: len(order) // 6][:2000], order[len(order) // 6:]
    results = {}
    for name in factors_wanted:
        keras.utils.set_random_seed(0)
        labels = factors[name]
        model = classifier(images.shape[1:], FACTORS[name])
        model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(images[train], labels[train], epochs=args.epochs, batch_size=128, validation_split=0.1, verbose=0,
                  callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)])
        right = np.asarray(model.predict(images[test], verbose=0)).argmax(1) == labels[test]
        per_shape = {shape: round(float(right[factors["shape"][test] == s].mean()), 2) for s, shape in enumerate(SHAPES)}
        results[name] = {"accuracy": round(float(right.mean()), 3), "per_shape": per_shape}
        print(json.dumps({"factor": name, **results[name]}), flush=True)
    return results


if __name__ == "__main__":
    main()
