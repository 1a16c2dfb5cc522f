"""The GPU checks, for the day a GPU is available: a few minutes, never a test dependency.

python -m benchmarks.gpu [--steps 60]   (or benchmarks/gpu.sh, which also records the machine)

Four checks on the paper's MNIST ML-VAE (input 784, hidden 500, content and style 10, Adam),
random images in 64 groups of 10 per batch. Each prints one JSON line with `ok`, observations per
second after a warm-up and the final loss:
1. `ragged_one_gpu`: ragged batches of whole groups on one GPU (graph mode; XLA cannot compile
   ragged ops).
2. `xla_pairs`: padded pairs, `jit_compile=True`, `steps_per_execution=10` (the fused XLA path).
3. `mixed_float16`: the XLA pair path under the `mixed_float16` policy (the grouped posterior stays
   float32; the loss is scaled).
4. `mirrored_all_gpus`: `MirroredStrategy` over every visible GPU, ragged batches, each replica
   given whole groups; with one GPU it runs one replica. Also the largest difference between the
   weights after one step there and on one GPU, with the same noise (should be < 1e-4).
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.data import grouped_dataset, largest_batch, to_pairs  # noqa: E402

INPUT_SHAPE, HIDDEN, LATENT, GROUPS, GROUP_SIZE = (28, 28, 1), 500, 10, 64, 10


class _FixedNoise(mlvae_tf.MLVAE):
    """Noise from each observation's image: the same on whichever replica the observation lands."""

    def compute_elbo_terms(self, images, group_ids, num_groups, training=False, noise=None, num_segments=None):
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        noise = {"content": tf.sin(flat[:, :LATENT] * 37.0 + 1.0), "style": tf.cos(flat[:, LATENT:2 * LATENT] * 53.0)}
        return super().compute_elbo_terms(images, group_ids, num_groups, training, noise, num_segments)


def _data(steps):
    rng = np.random.default_rng(0)
    n = GROUPS * GROUP_SIZE * steps
    x = rng.random((n,) + INPUT_SHAPE).astype("float32")
    labels = np.repeat(np.arange(n // GROUP_SIZE), GROUP_SIZE)
    return x, labels, grouped_dataset(x, labels, groups_per_batch=GROUPS, seed=0)


def _timed_fit(model, batches, steps_per_execution=1):
    times = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    history = model.fit(batches, epochs=1, verbose=0, callbacks=[clock])
    step = statistics.median(np.diff(times[2:])) / steps_per_execution
    loss = float(history.history["loss"][-1])
    return {"obs_per_s": round(GROUPS * GROUP_SIZE / step, 1), "loss": loss, "ok": bool(np.isfinite(loss))}


def _model(cls=mlvae_tf.MLVAE, optimizer=None, **compile_args):
    keras.utils.set_random_seed(0)
    model = cls(INPUT_SHAPE, LATENT, LATENT, hidden_units=HIDDEN, seed=0)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), **compile_args)
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    gpus = tf.config.list_logical_devices("GPU")
    print(json.dumps({"check": "devices", "gpus": [d.name for d in gpus], "ok": bool(gpus)}), flush=True)
    x, labels, ragged = _data(args.steps)
    pairs = to_pairs(ragged, pad_to=largest_batch(labels, GROUPS))
    checks = {
        "ragged_one_gpu": lambda: _timed_fit(_model(jit_compile=False), ragged),
        "xla_pairs": lambda: _timed_fit(_model(jit_compile=True, steps_per_execution=10), pairs, 10),
    }

    def mixed():
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            return _timed_fit(_model(jit_compile=True, steps_per_execution=10), pairs, 10)
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def mirrored():
        strategy = tf.distribute.MirroredStrategy()
        with strategy.scope():
            model = _model(jit_compile=False)
        result = _timed_fit(model, ragged)
        weights = []
        for scope in (tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), strategy):
            with scope.scope():
                one = _model(_FixedNoise, keras.optimizers.SGD(0.1))  # Adam's first step would hide a scale
            one.fit(ragged.take(1), epochs=1, verbose=0)
            weights.append([w.numpy() for w in one.trainable_weights])
        difference = max(float(np.abs(a - b).max()) for a, b in zip(*weights))
        return {**result, "replicas": strategy.num_replicas_in_sync, "one_step_weight_difference": difference,
                "ok": result["ok"] and difference < 1e-4}

    checks.update({"mixed_float16": mixed, "mirrored_all_gpus": mirrored})
    for name, check in checks.items():
        started = time.perf_counter()
        try:
            result = check()
        except Exception as error:  # noqa: BLE001  (a report: every check runs)
            result = {"ok": False, "error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(json.dumps({"check": name, **result, "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
