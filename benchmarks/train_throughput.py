"""Training throughput of the paper's MNIST ML-VAE through `model.fit` on a grouped `tf.data` pipeline.

python -m benchmarks.train_throughput --groups 64 --group-size 10 --steps 60
    [--jit | --graph] [--steps-per-execution K] [--architecture conv64|spatial|equivariant]
    [--group-sizes 1,10,100,skewed] [--compare-torch PYTHON [--torch-script PATH] [--pairs 3]]

Without `--jit` or `--graph` it measures the package's default path: `compile()` with its defaults,
`fit` on `grouped_dataset`'s batches as they are (issue 18).

The workload (issue 7): input 784 (28x28x1), hidden 500, content and style 10, Normal likelihood
of unit variance, Adam 1e-3, float32 random inputs (`--architecture conv64`: 64x64x3, latents 50,
the learned-variance Normal; `spatial` and `equivariant`: 32x32x3, latents 8, Bernoulli). Prints
JSON lines: one with `obs_per_s` (after warm-up), the GEMM-limit bound on this machine and our
fraction of it; one per group-size spec with the cost per observation; and, with `--compare-torch`, the interleaved runs (A B A B)
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


class _KerasLoopMLVAE(mlvae_tf.MLVAE):
    """Keras's loop of one call into XLA per step, without `mlvae_tf.execution` (for comparison)."""

    def _fused(self, step_function, keras_function):
        return keras_function


NETWORKS = {  # architecture: (input shape, latent size, likelihood)
    "mlp": (INPUT_SHAPE, LATENT, "normal_fixed"),
    "conv64": ((64, 64, 3), 50, "normal"),  # the paper's MS-Celeb-1M network
    "spatial": ((32, 32, 3), 8, "bernoulli"),  # the grouped shapes' (benchmarks.groupings)
    "equivariant": ((32, 32, 3), 8, "bernoulli"),  # the same, the style's angle read from turned copies
}


OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}  # --optimizer: sgd for Adam's share


def make_trainer(sizes, warmup, seed=0, aggregation="product", jit=False, steps_per_execution=1,
                 epoch_batches=94, shuffle=True, constant=False, keras_loop=False, path="flags", architecture="mlp",
                 optimizer="adam"):
    """A warmed-up model and its repeated pipeline, on batches whose groups have `sizes`; returns
    `timed_round(steps)`, the observations per second of one `fit` call of `steps` steps.

    The data are `epoch_batches` batches' worth of groups (94: an MNIST-sized epoch of 60,160
    observations); with `shuffle`, as users train, every epoch draws new batches of them, else
    every batch holds exactly `sizes`. With `jit`, the ragged batches become `(images, group_ids)`
    pairs of one size inside tf.data (shuffled ones padded to the largest batch), and the step is
    compiled with XLA (with `keras_loop`, one call into XLA per step, as Keras runs it, instead of
    one per execution). With `path="default"`, the model is compiled with the package's defaults and
    fed `grouped_dataset`'s batches as they are, as the README trains (`jit` and
    `steps_per_execution` unused). With `constant`, `fit` reads the pipeline's first batch over and over from memory:
    the step's own speed, without the pipeline's work on the same cores. A round is timed from
    its first to its last executed step, so a fit call's set-up is not counted.
    """
    keras.utils.set_random_seed(seed)
    per_batch = sum(sizes)
    labels = np.repeat(np.arange(len(sizes) * epoch_batches), np.tile(sizes, epoch_batches))
    input_shape, latent, likelihood = NETWORKS[architecture]
    x = np.random.default_rng(seed).uniform(size=(len(labels), *input_shape)).astype(np.float32)
    grouped = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=len(sizes), shuffle=shuffle, seed=seed)
    ds = grouped.repeat()  # rounds of `steps_per_epoch` steps
    # As fit gets grouped_dataset's own output, an epoch at a time: what the default path pads to.
    ds._largest_batch, ds._mean_batch = grouped._largest_batch, grouped._mean_batch
    if jit and path != "default":  # one shape for one XLA program: shuffled batches of unequal groups padded to the largest
        pad_to = mlvae_tf.data.largest_batch(labels, len(sizes)) if shuffle else per_batch
        ds = mlvae_tf.data.to_pairs(ds, pad_to=pad_to)
    if constant:
        ds = tf.data.Dataset.from_tensors(next(iter(ds))).repeat()
    model_class = _KerasLoopMLVAE if keras_loop else mlvae_tf.MLVAE
    model = model_class(input_shape=input_shape, content_dim=latent, style_dim=latent, hidden_units=HIDDEN,
                        likelihood=likelihood, observation_scale=1.0, aggregation=aggregation, seed=seed,
                        architecture=architecture)
    if path == "default":
        model.compile(optimizer=OPTIMIZERS[optimizer](1e-3))
        steps_per_execution = model.steps_per_execution
    else:
        model.compile(optimizer=OPTIMIZERS[optimizer](1e-3), jit_compile=jit, steps_per_execution=steps_per_execution)
    model.fit(ds, epochs=1, steps_per_epoch=max(warmup, steps_per_execution), verbose=0)

    def timed_round(steps):
        clock = _BatchClock()
        model.fit(ds, epochs=1, steps_per_epoch=steps + steps_per_execution, verbose=0, callbacks=[clock])
        return per_batch * steps / (clock.times[-1] - clock.times[0])

    return timed_round


def fit_rounds(sizes, steps, warmup, rounds=1, between=None, **kwargs):
    """Observations per second of `model.fit`, one figure per round (see `make_trainer`); `between()`
    runs after each round (the GEMM bound, so that both see the same state of this shared machine)."""
    timed_round = make_trainer(sizes, warmup, **kwargs)
    rates = []
    for _ in range(rounds):
        rates.append(timed_round(steps))
        if between is not None:
            between()
    return rates


def measure_fit(sizes, steps, warmup, **kwargs):
    """Observations per second of `model.fit` (see `fit_rounds`), one round."""
    return fit_rounds(sizes, steps, warmup, **kwargs)[0]


def gemm_step(observations):
    """A `tf.function` running the matrix products alone of one training step (forward, weight
    gradients, input gradients except the first layer's) on this model's shapes, as
    `../shared/bench/gemm_bound.py` does."""
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
    return step


def gemm_bound(observations, step=None, repeats=5, calls=30):
    """Observations/s allowed by the matrix products alone of one training step: the best of
    `repeats` timings of `calls` calls of `gemm_step`."""
    step = step or gemm_step(observations)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = step()
        [o.numpy() for o in out]
        best = min(best, (time.perf_counter() - start) / calls)
    return observations / best


def _run_json(command):
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=30, help="steps before timing (the first fit of a process pays one-time costs)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of the main measurement (each followed by the GEMM bound) and of each group-size spec")
    parser.add_argument("--group-sizes", default="", help="comma-separated specs, e.g. 1,10,100,skewed")
    parser.add_argument("--compare-torch", metavar="PYTHON", help="interpreter with torch for the reference")
    parser.add_argument("--torch-script", default=DEFAULT_TORCH_SCRIPT)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--no-bound", action="store_true", help="skip the GEMM bound (for interleaved runs)")
    parser.add_argument("--aggregation", default="product", choices=("product", "mixture"))
    parser.add_argument("--jit", action="store_true", help="(images, group_ids) pairs and an XLA-compiled step")
    parser.add_argument("--graph", action="store_true", help="graph mode: compile(jit_compile=False)")
    parser.add_argument("--steps-per-execution", type=int, default=None,
                        help="`compile(steps_per_execution=...)` with --jit or --graph (default 1)")
    parser.add_argument("--architecture", default="mlp", choices=tuple(NETWORKS),
                        help="conv64: the paper's MS-Celeb-1M network, 64x64x3, d = 50, Normal likelihood "
                             "(use --groups 16 --group-size 4; the GEMM bound is the mlp's, so it is skipped)")
    parser.add_argument("--no-shuffle", action="store_true",
                        help="the same batches every epoch (default: new batches each epoch, as users train)")
    parser.add_argument("--keras-loop", action="store_true",
                        help="with --jit: Keras's loop, one call into XLA per step (default: one XLA program per execution)")
    parser.add_argument("--constant-batch", action="store_true",
                        help="one batch held in memory instead of the pipeline (the step alone, for diagnosis)")
    parser.add_argument("--optimizer", default="adam", choices=tuple(OPTIMIZERS),
                        help="sgd: the step without Adam's moments (Adam's share of it, for diagnosis)")
    args = parser.parse_args(argv)
    path = "flags" if args.jit or args.graph else "default"  # no flags: the package's default path
    args.steps_per_execution = args.steps_per_execution or (10 if path == "default" else 1)
    args.no_bound = args.no_bound or args.architecture != "mlp"
    if args.steps % args.steps_per_execution:
        parser.error("--steps must be a multiple of --steps-per-execution (rounds are timed per execution)")
    observations = args.groups * args.group_size
    settings = {"groups": args.groups, "group_size": args.group_size, "steps": args.steps, "warmup": args.warmup,
                "rounds": args.rounds, "steps_per_execution": args.steps_per_execution,
                "shuffle": not args.no_shuffle, "constant_batch": args.constant_batch,
                "input": int(np.prod(NETWORKS[args.architecture][0])), "hidden": HIDDEN,
                "latent": NETWORKS[args.architecture][1],
                "threads": os.cpu_count(), "tensorflow": tf.__version__}
    fit_args = {"aggregation": args.aggregation, "jit": args.jit, "steps_per_execution": args.steps_per_execution,
                "keras_loop": args.keras_loop, "path": path, "architecture": args.architecture,
                "optimizer": args.optimizer}

    bounds = []
    between = None
    if not args.no_bound:
        step = gemm_step(observations)
        between = lambda: bounds.append(gemm_bound(observations, step))  # noqa: E731
    rates = fit_rounds([args.group_size] * args.groups, args.steps, args.warmup, rounds=args.rounds,
                       between=between, shuffle=not args.no_shuffle, constant=args.constant_batch, **fit_args)
    result = {"impl": "mlvae_tf", **fit_args, "obs_per_s": round(statistics.median(rates), 1),
              "obs_per_s_rounds": [round(r) for r in rates], **settings}
    if bounds:
        fractions = [r / b for r, b in zip(rates, bounds)]
        result.update(gemm_bound_obs_per_s=round(statistics.median(bounds), 1),
                      gemm_bound_rounds=[round(b) for b in bounds],
                      fraction_of_gemm_bound=round(statistics.median(fractions), 3),
                      fraction_rounds=[round(f, 3) for f in fractions])
    print(json.dumps(result), flush=True)

    specs = list(filter(None, args.group_sizes.split(",")))
    # The same batches every epoch, so that each holds exactly the spec's group sizes; the specs'
    # rounds alternate (A B C A B C ...), so that a slow minute of this machine is shared among them.
    sizes = {spec: batch_group_sizes(spec, observations) for spec in specs}
    trainers = {spec: make_trainer(sizes[spec], args.warmup, shuffle=False, **fit_args) for spec in specs}
    rates = {spec: [] for spec in specs}
    for _ in range(args.rounds if specs else 0):
        for spec in specs:
            rates[spec].append(trainers[spec](args.steps))
    for spec in specs:
        rate = statistics.median(rates[spec])
        print(json.dumps({"group_sizes": spec, "aggregation": args.aggregation, "groups_per_batch": len(sizes[spec]),
                          "largest_group": max(sizes[spec]), "obs_per_s": round(rate, 1), "us_per_obs": round(1e6 / rate, 2),
                          "obs_per_s_rounds": [round(r) for r in rates[spec]]}), flush=True)

    if args.compare_torch:
        ours_cmd = [sys.executable, "-m", "benchmarks.train_throughput", "--groups", str(args.groups),
                    "--group-size", str(args.group_size), "--steps", str(args.steps), "--no-bound", "--rounds", "1",
                    "--steps-per-execution", str(args.steps_per_execution)]
        ours_cmd += (["--jit"] if args.jit else []) + (["--graph"] if args.graph else [])
        ours_cmd += ["--no-shuffle"] if args.no_shuffle else []
        ours_cmd += ["--keras-loop"] if args.keras_loop else []
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
