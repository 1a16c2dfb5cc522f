"""Why `MLVAE.fit` refuses ragged batches under `jit_compile=True`: XLA compiles the step once per
batch shape, and batches of whole groups vary in size.

python -m benchmarks.ragged_xla [--epochs 2]

Trains a small ML-VAE on the bundled digits (16 groups of at most 10 per batch, 12 batches of
varying size per epoch) three ways and prints one JSON line each with the seconds of `fit`:
ragged batches without XLA, the same ragged batches under XLA (through `keras.Model.fit`, around
the refusal), and `to_pairs(ds, pad_to=largest_batch(...))` under XLA (the documented fast path).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import mlvae_tf  # noqa: E402


def fit_seconds(data, jit_compile, epochs):
    """Seconds of `epochs` epochs of `fit` on `data`, compilation included (that is the cost)."""
    keras.utils.set_random_seed(0)
    model = mlvae_tf.MLVAE(input_shape=(8, 8, 1), content_dim=3, style_dim=2, hidden_units=64, seed=0)
    model.compile(optimizer="adam", jit_compile=jit_compile)
    start = time.perf_counter()
    keras.Model.fit(model, data, epochs=epochs, verbose=0)  # keras's own fit: no refusal
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    x, labels = mlvae_tf.data.digits_splits(seed=0)["train"]
    ragged = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=16, max_group_size=10, seed=0)
    pairs = mlvae_tf.data.to_pairs(ragged, pad_to=mlvae_tf.data.largest_batch(labels, 16, 10))
    shapes = {int(batch.flat_values.shape[0]) for batch in ragged}
    for name, data, jit in (("ragged", ragged, False), ("ragged", ragged, True), ("padded pairs", pairs, True)):
        print(json.dumps({"batches": name, "jit_compile": jit, "epochs": args.epochs,
                          "batch_sizes_in_an_epoch": len(shapes) if name == "ragged" else 1,
                          "seconds": round(fit_seconds(data, jit, args.epochs), 1)}), flush=True)


if __name__ == "__main__":
    main()
