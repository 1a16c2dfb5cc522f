"""Encoder throughput and latency at batch 1 and 256: Keras, the SavedModel and ONNX Runtime, side by side.

python -m benchmarks.inference [--model runs/demo/model.keras] [--repeats 200]

Exports the model to a temporary folder first. Prints one JSON line per (runtime, batch) with the
median latency in ms and the images per second.
"""

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402

import mlvae_tf  # noqa: E402
from export import export_model  # noqa: E402


def _time(fn, repeats):
    fn()  # warm-up
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="saved .keras model (default: a fresh paper MNIST-size model)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    if args.model:
        model = keras.models.load_model(args.model)
    else:
        model = mlvae_tf.MLVAE(input_shape=(28, 28, 1), content_dim=10, style_dim=10, seed=0)
    with tempfile.TemporaryDirectory() as out:
        export_model(model, out, "bench")
        served = tf.saved_model.load(os.path.join(out, "bench", "encoder", "1")).signatures["serving_default"]
        session = ort.InferenceSession(os.path.join(out, "bench", "onnx", "encoder.onnx"))
        keras_fn = tf.function(lambda images: model.encode(images))
        for batch in (1, 256):
            x = np.random.default_rng(0).uniform(size=(batch, *model.input_shape)).astype(np.float32)
            tensor = tf.constant(x)
            runtimes = {
                "keras (tf.function)": lambda: [v.numpy() for v in keras_fn(tensor).values()],
                "savedmodel": lambda: [v.numpy() for v in served(images=tensor).values()],
                "onnxruntime": lambda: session.run(None, {"images": x}),
            }
            for name, fn in runtimes.items():
                seconds = _time(fn, args.repeats)
                print(json.dumps({"runtime": name, "batch": batch, "latency_ms": round(1e3 * seconds, 3),
                                  "images_per_s": round(batch / seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
