"""Peak memory of training on a stream: it must not grow with the data size.

python -m benchmarks.memory

Runs, each in a fresh process, `MLVAE.fit` on groups streamed from a Python generator through
`tf.data.Dataset.from_generator` (the paper's MNIST model, batches of 64 groups of 10): 1 epoch of
10,000 observations, then 10 epochs of 100,000. Prints the peak resident memory of each and
their ratio (issue 7's target: <= 1.5).
"""

import json
import os
import subprocess
import sys

_RUN = """
import os, resource, sys, numpy as np, tensorflow as tf, keras
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import mlvae_tf
observations, epochs = int(sys.argv[1]), int(sys.argv[2])
def groups():
    rng = np.random.default_rng(0)
    for _ in range(observations // 10):
        yield rng.uniform(size=(10, 28, 28, 1)).astype(np.float32)
ds = tf.data.Dataset.from_generator(groups, output_signature=tf.TensorSpec([None, 28, 28, 1], tf.float32))
ds = ds.ragged_batch(64).prefetch(2)
model = mlvae_tf.MLVAE(input_shape=(28, 28, 1), content_dim=10, style_dim=10, likelihood="normal_fixed", seed=0)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
model.fit(ds, epochs=epochs, verbose=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def peak_mib(observations, epochs):
    out = subprocess.run([sys.executable, "-c", _RUN, str(observations), str(epochs)], capture_output=True,
                         text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}).stdout
    return int(out.strip().splitlines()[-1])


def main():
    small = peak_mib(10_000, 1)
    large = peak_mib(100_000, 10)
    print(json.dumps({"peak_mib_1_epoch_10k": small, "peak_mib_10_epochs_100k": large,
                      "ratio": round(large / small, 3), "target": "<= 1.5"}))


if __name__ == "__main__":
    main()
