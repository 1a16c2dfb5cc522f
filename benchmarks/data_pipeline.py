"""Throughput of the grouped pipelines, next to the training step's own rate.

python -m benchmarks.data_pipeline [--groups 64] [--group-size 10] [--epochs 3]

Prints JSON lines: groups/s and observations/s of `grouped_dataset` (in memory, the paper's MNIST
shapes) and of `from_tfds(..., in_memory=False)` (streamed with `group_by_window`, from the
offline `grouped_shapes/small` built in a temporary folder), and the training step's obs/s
(`benchmarks.train_throughput`), so that the pipeline is seen not to be the bottleneck.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import mlvae_tf  # noqa: E402
from benchmarks.train_throughput import measure_fit  # noqa: E402


def _rate(ds, epochs):
    """(groups/s, observations/s) over `epochs` passes, after one warm-up pass."""
    for _ in ds:
        pass
    groups = observations = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in ds:
            lengths = batch.row_lengths()
            groups += int(lengths.shape[0])
            observations += int(lengths.numpy().sum())
    seconds = time.perf_counter() - start
    return groups / seconds, observations / seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)

    n = 100 * args.groups * args.group_size
    x = np.random.default_rng(0).uniform(size=(n, 28, 28, 1)).astype(np.float32)
    labels = np.repeat(np.arange(n // args.group_size), args.group_size)
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=args.groups, seed=0)
    groups, obs = _rate(ds, args.epochs)
    print(json.dumps({"pipeline": "grouped_dataset (in memory)", "shape": [28, 28, 1], "observations": n,
                      "groups_per_s": round(groups), "obs_per_s": round(obs)}), flush=True)

    with tempfile.TemporaryDirectory() as data_dir:
        import tensorflow_datasets as tfds

        from mlvae_tf.data import grouped_shapes  # noqa: F401

        tfds.builder("grouped_shapes/small", data_dir=data_dir).download_and_prepare()
        for in_memory in (True, False):
            ds = mlvae_tf.data.from_tfds("grouped_shapes/small", "shape", groups_per_batch=args.groups,
                                         max_group_size=args.group_size, seed=0, in_memory=in_memory,
                                         data_dir=data_dir, download=False)
            groups, obs = _rate(ds, args.epochs)
            print(json.dumps({"pipeline": f"from_tfds grouped_shapes/small ({'in memory' if in_memory else 'streamed'})",
                              "shape": [32, 32, 3], "groups_per_s": round(groups), "obs_per_s": round(obs)}),
                  flush=True)

    train = measure_fit([args.group_size] * args.groups, steps=40, warmup=20)
    print(json.dumps({"training_step": "MLVAE.fit, paper's MNIST model", "obs_per_s": round(train)}))


if __name__ == "__main__":
    main()
