"""Training throughput of the paper's MNIST ML-VAE through `model.fit` on a grouped `tf.data` pipeline.

python -m benchmarks.train_throughput --groups 64 --group-size 10 --steps 60
    [--group-sizes 1,10,100,skewed] [--compare-torch PYTHON [--torch-script PATH] [--pairs 3]]

The workload (issue 7): input 784 (28x28x1), hidden 500, content and style 10, Normal likelihood
of unit variance, Adam 1e-3, float32 random inputs. Prints JSON lines: one with `obs_per_s`
(after warm-up), the GEMM-limit bound on this machine and our fraction of it; one per group-size
spec with the cost per observation; and, with `--compare-torch`, the interleaved runs (A B A B)
of this benchmark and `torch_reference.py` and the median ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import mlvae_tf  # noqa: E402

INPUT_SHAPE = (28, 28, 1)
HIDDEN, LATENT = 500, 10
DEFAULT_TORCH_SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench", "torch_reference.py")


class _BatchClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def batch_group_sizes(spec, observations, seed=0):
    """Group sizes of one batch of `observations` for a spec: an int size, or "skewed" (long-tailed)."""
    if spec == "skewed":
        rng = np.random.default_rng(seed)
        sizes = []
        while sum(sizes) < observations:
            sizes.append(int(min(rng.zipf(1.6), observations - sum(sizes))))
        return sizes
    size = int(spec)
    return [size] * (observations // size) + ([observations % size] if observations % size else [])


def measure_fit(sizes, steps, warmup, seed=0, aggregation="product", jit=False):
    """Observations per second of `model.fit` on batches whose groups have `sizes`.

    With `jit`, the ragged batches are turned into `(images, group_ids)` pairs inside the tf.data
    pipeline and the step is compiled with XLA (which cannot compile ragged-tensor ops)."""
    keras.utils.set_random_seed(seed)
    per_batch = sum(sizes)
    batches = steps + warmup
    labels = np.repeat(np.arange(len(sizes) * batches), np.tile(sizes, batches))
    x = np.random.default_rng(seed).uniform(size=(len(labels), *INPUT_SHAPE)).astype(np.float32)
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=len(sizes), shuffle=False)
    if jit:
        ds = mlvae_tf.data.to_pairs(ds)
    model = mlvae_tf.MLVAE(input_shape=INPUT_SHAPE, content_dim=LATENT, style_dim=LATENT, hidden_units=HIDDEN,
                           likelihood="normal_fixed", observation_scale=1.0, aggregation=aggregation, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
    clock = _BatchClock()
    model.fit(ds, epochs=1, verbose=0, callbacks=[clock])
    seconds = clock.times[-1] - clock.times[warmup - 1]
    return per_batch * steps / seconds


def gemm_bound(observations):
    """Observations/s allowed by the matrix products alone of one training step (forward, weight
    gradients, input gradients except the first layer's) on this model's shapes."""
    n, d_in, h, d = observations, int(np.prod(INPUT_SHAPE)), HIDDEN, LATENT
    r = lambda *shape: tf.random.normal(shape)  # noqa: E731
    x, w1, w2, w3, w4 = r(n, d_in), r(d_in, h), r(h, 4 * d), r(2 * d, h), r(h, d_in)
    hid, z, g_out, g_h, g_heads = r(n, h), r(n, 2 * d), r(n, d_in), r(n, h), r(n, 4 * d)

    @tf.function
    def step():
        products = (
            tf.matmul(x, w1), tf.matmul(hid, w2), tf.matmul(z, w3), tf.matmul(hid, w4),
            tf.matmul(hid, g_out, transpose_a=True), tf.matmul(g_out, w4, transpose_b=True),
            tf.matmul(z, g_h, transpose_a=True), tf.matmul(g_h, w3, transpose_b=True),
            tf.matmul(hid, g_heads, transpose_a=True), tf.matmul(g_heads, w2, transpose_b=True),
            tf.matmul(x, g_h, transpose_a=True),
        )
        return [tf.reduce_sum(t[:1, :1]) for t in products]

    step()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(30):
            out = step()
        [o.numpy() for o in out]
        best = min(best, (time.perf_counter() - start) / 30)
    return observations / best


def _run_json(command):
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=30, help="steps before timing (the first fit of a process pays one-time costs)")
    parser.add_argument("--group-sizes", default="", help="comma-separated specs, e.g. 1,10,100,skewed")
    parser.add_argument("--compare-torch", metavar="PYTHON", help="interpreter with torch for the reference")
    parser.add_argument("--torch-script", default=DEFAULT_TORCH_SCRIPT)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-bound", action="store_true", help="skip the GEMM bound (for interleaved runs)")
    parser.add_argument("--aggregation", default="product", choices=("product", "mixture"))
    parser.add_argument("--jit", action="store_true", help="(images, group_ids) pairs and an XLA-compiled step")
    args = parser.parse_args(argv)
    observations = args.groups * args.group_size
    settings = {"groups": args.groups, "group_size": args.group_size, "steps": args.steps, "warmup": args.warmup,
                "input": int(np.prod(INPUT_SHAPE)), "hidden": HIDDEN, "latent": LATENT,
                "threads": os.cpu_count(), "tensorflow": tf.__version__}

    obs_per_s = measure_fit([args.group_size] * args.groups, args.steps, args.warmup, aggregation=args.aggregation,
                            jit=args.jit)
    result = {"impl": "mlvae_tf", "aggregation": args.aggregation, "jit": args.jit, "obs_per_s": round(obs_per_s, 1), **settings}
    if not args.no_bound:
        bound = gemm_bound(observations)
        result.update(gemm_bound_obs_per_s=round(bound, 1), fraction_of_gemm_bound=round(obs_per_s / bound, 3))
    print(json.dumps(result), flush=True)

    for spec in filter(None, args.group_sizes.split(",")):
        sizes = batch_group_sizes(spec, observations)
        rate = measure_fit(sizes, args.steps, args.warmup, aggregation=args.aggregation, jit=args.jit)
        print(json.dumps({"group_sizes": spec, "aggregation": args.aggregation, "groups_per_batch": len(sizes), "largest_group": max(sizes),
                          "obs_per_s": round(rate, 1), "us_per_obs": round(1e6 / rate, 2)}), flush=True)

    if args.compare_torch:
        ours_cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--groups", str(args.groups),
                    "--group-size", str(args.group_size), "--steps", str(args.steps), "--no-bound"]
        ours_cmd += ["--jit"] if args.jit else []
        torch_cmd = [args.compare_torch, args.torch_script, "--groups", str(args.groups), "--group-size",
                     str(args.group_size), "--steps", str(args.steps)]
        ratios = []
        for pair in range(args.pairs):
            ours, reference = _run_json(ours_cmd)["obs_per_s"], _run_json(torch_cmd)["obs_per_s"]
            ratios.append(ours / reference)
            print(json.dumps({"pair": pair, "mlvae_tf_obs_per_s": ours, "torch_obs_per_s": round(reference, 1),
                              "ratio": round(ours / reference, 3)}), flush=True)
        print(json.dumps({"median_ratio_vs_torch": round(statistics.median(ratios), 3), "pairs": args.pairs}))


if __name__ == "__main__":
    main()
