"""This package's default path beside the PyTorch and JAX references, interleaved, each as a
fraction of the machine's GEMM bound.

python -m benchmarks.compare_frameworks --torch /tmp/torchenv/bin/python --jax /tmp/jaxenv/bin/python [--rounds 3] [--gemm]

The paper's MNIST ML-VAE, 64 groups x 10, Adam (issue 18's workload). Every round runs, in one
process tree, one process per implementation in turn and the GEMM bound (`gemm_bound.py`) after
them: this package's default path (`python -m benchmarks.train_throughput` with no flags), the
torch reference eager and with `--compile --fused-adam`, the JAX reference with one jitted step
and with `--scan 10`. Each throughput is divided by the bound of its round; prints one JSON line
per run, then the medians of the fractions and the ratios of this package's to each reference's.
The interpreters of torch and JAX are arguments (separate virtualenvs): neither is ever a
dependency of the package; an implementation whose interpreter is not given is left out.

`--gemm` times only the bound's matrix products in each framework instead (`gemm_products.py`:
TensorFlow in graph mode, which is the bound, and under XLA, torch, JAX), interleaved the same way,
and prints each one's medians and its speed relative to TensorFlow's graph mode: how much of a
reference's lead is its matrix products.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")


def _json(command):
    """The last JSON line that `command` prints."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", metavar="PYTHON", help="an interpreter with torch==2.13.0")
    parser.add_argument("--jax", metavar="PYTHON", help="an interpreter with jax[cpu]==0.10.2 and optax")
    parser.add_argument("--bench", default=BENCH, help="the folder of the reference scripts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--gemm", action="store_true", help="time only the bound's products in each framework")
    args = parser.parse_args(argv)
    if args.gemm:
        return _gemm(args)
    steps = ["--steps", str(args.steps)]
    runs = {"mlvae_tf default": [sys.executable, "-m", "benchmarks.train_throughput", "--no-bound", "--rounds", "1",
                                 "--warmup", "20"] + steps}
    if args.torch:
        torch = [args.torch, os.path.join(args.bench, "torch_reference.py")] + steps
        runs.update({"torch eager": torch, "torch.compile + fused Adam": torch + ["--compile", "--fused-adam"]})
    if args.jax:
        jax = [args.jax, os.path.join(args.bench, "jax_reference.py")] + steps
        runs.update({"jax jit": jax, "jax scan 10": jax + ["--scan", "10"]})
    fractions = {name: [] for name in runs}
    for round_ in range(args.rounds):
        rates = {name: _json(command)["obs_per_s"] for name, command in runs.items()}
        bound = _json([sys.executable, os.path.join(args.bench, "gemm_bound.py")])["bound_obs_per_s"]
        for name, rate in rates.items():
            fractions[name].append(rate / bound)
            print(json.dumps({"round": round_, "impl": name, "obs_per_s": round(rate, 1),
                              "bound_obs_per_s": round(bound, 1), "fraction": round(rate / bound, 3)}), flush=True)
    medians = {name: statistics.median(values) for name, values in fractions.items()}
    ours = medians["mlvae_tf default"]
    print(json.dumps({"median_fraction": {name: round(value, 3) for name, value in medians.items()},
                      "ratio_of_mlvae_tf_default_to": {
                          name: round(ours / value, 3) for name, value in medians.items() if name != "mlvae_tf default"},
                      "rounds": args.rounds}))


def _gemm(args):
    """`--gemm`: the bound's products in each framework, rounds interleaved, against graph mode's."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gemm_products.py")
    runs = {name: [python, script, "--framework", name] for name, python in
            (("tf", sys.executable), ("tf-xla", sys.executable), ("torch", args.torch), ("jax", args.jax)) if python}
    seconds = {name: [] for name in runs}
    for round_ in range(args.rounds):
        for name, command in runs.items():
            seconds[name].append(_json(command)["gemm_s_per_step"])
            print(json.dumps({"round": round_, "framework": name, "ms": round(1e3 * seconds[name][-1], 3)}), flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(json.dumps({"median_ms": {name: round(1e3 * value, 3) for name, value in medians.items()},
                      "speed_relative_to_tf_graph": {name: round(medians["tf"] / value, 3)
                                                     for name, value in medians.items()},
                      "rounds": args.rounds}))


if __name__ == "__main__":
    main()
