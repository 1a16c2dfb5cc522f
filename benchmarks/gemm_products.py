"""The GEMM bound's matrix products (`../shared/bench/gemm_bound.py`) in one framework, timed the same way.

python benchmarks/gemm_products.py --framework tf|tf-xla|torch|jax

A standalone script that imports only the framework it is asked for, so the torch and JAX
virtualenvs run it as they run the references (`compare_frameworks --gemm`). The eleven products
of one training step of the paper's MNIST ML-VAE, 64 groups x 10 (forward, weight gradients, input
gradients but the first layer's), best of 5 x 50 calls; `tf` is `gemm_bound.py`'s own measurement.
Prints one JSON line: the seconds per step's products and the observations per second they allow.
"""

import argparse
import json
import time

N, D, H, d = 640, 784, 500, 10
SHAPES = {"x": (N, D), "W1": (D, H), "W2": (H, 4 * d), "W3": (2 * d, H), "W4": (H, D), "h": (N, H),
          "z": (N, 2 * d), "g_out": (N, D), "g_h": (N, H), "g_heads": (N, 4 * d)}
FLOPS = 2 * N * (D * H + H * 4 * d + 2 * d * H + H * D) * 3 - 2 * N * D * H


def products(t, matmul, total):
    """The eleven products on the tensors `t`, each reduced to its corner element as `gemm_bound.py`
    does (`total` sums a tensor); `matmul(a, b, transpose_a, transpose_b)`."""
    no, yes = False, True
    pairs = [("x", "W1", no, no), ("h", "W2", no, no), ("z", "W3", no, no), ("h", "W4", no, no),  # forward
             ("h", "g_out", yes, no), ("g_out", "W4", no, yes), ("z", "g_h", yes, no), ("g_h", "W3", no, yes),
             ("h", "g_heads", yes, no), ("g_heads", "W2", no, yes), ("x", "g_h", yes, no)]  # backward
    return [total(matmul(t[a], t[b], ta, tb)[:1, :1]) for a, b, ta, tb in pairs]


def _step(framework):
    """`(step, wait)`: a call that computes the products and one that waits for its results."""
    import numpy as np

    values = {name: np.random.default_rng(i).standard_normal(shape, dtype=np.float32)
              for i, (name, shape) in enumerate(SHAPES.items())}
    if framework in ("tf", "tf-xla"):
        import tensorflow as tf

        t = {name: tf.constant(value) for name, value in values.items()}
        matmul = lambda a, b, ta, tb: tf.matmul(a, b, transpose_a=ta, transpose_b=tb)  # noqa: E731
        step = tf.function(lambda: products(t, matmul, tf.reduce_sum), jit_compile=framework == "tf-xla")
        return step, lambda out: [o.numpy() for o in out]
    matmul = lambda a, b, ta, tb: (a.T if ta else a) @ (b.T if tb else b)  # noqa: E731
    if framework == "torch":
        import torch

        t = {name: torch.from_numpy(value) for name, value in values.items()}
        return (lambda: products(t, matmul, lambda x: x.sum())), lambda out: [float(o) for o in out]
    import jax

    t = {name: jax.numpy.asarray(value) for name, value in values.items()}
    jitted = jax.jit(lambda t: products(t, matmul, lambda x: x.sum()))
    return (lambda: jitted(t)), jax.block_until_ready


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", required=True, choices=("tf", "tf-xla", "torch", "jax"))
    args = parser.parse_args(argv)
    step, wait = _step(args.framework)
    wait(step())
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(50):
            out = step()
        wait(out)
        best = min(best, (time.perf_counter() - start) / 50)
    print(json.dumps({"framework": args.framework, "gemm_s_per_step": best, "gflops": FLOPS / best / 1e9,
                      "bound_obs_per_s": N / best}))


if __name__ == "__main__":
    main()
