"""Scaling of `fit` over workers: `MultiWorkerMirroredStrategy`, worker processes on 127.0.0.1.

python -m benchmarks.distributed [--workers 1,2,4] [--groups 64] [--group-size 10] [--steps 40]

The paper's MNIST ML-VAE (input 784, hidden 500, content and style 10, Bernoulli likelihood,
Adam), random images, a global batch of `--groups` groups of `--group-size` (the same for every
worker count: strong scaling), each worker's replica given whole groups. Each worker process gets
`cores / workers` threads. Prints one JSON line per worker count: global observations per second
(median over steps after a warm-up), the speedup and the efficiency per worker against one worker,
the median step, the bytes that each step's gradient all-reduce moves (the model's float32
gradients; a ring all-reduce sends and receives about 2 (W - 1) / W of them per worker) and the
time of that all-reduce alone. On one machine the workers share its cores: the ideal speedup is
1, and what is lost is the cost of running in several processes and of the all-reduce.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HIDDEN, LATENT, INPUT_SHAPE = 500, 10, (28, 28, 1)


def _worker(index, ports, groups, group_size, steps, threads):
    """One worker: trains `steps` steps and, as worker 0, prints the median global step time."""
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                          "task": {"type": "worker", "index": index}})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    import mlvae_tf

    rng = np.random.default_rng(0)
    n = groups * group_size * steps
    x = (rng.random((n,) + INPUT_SHAPE) < 0.3).astype("float32")
    labels = np.repeat(np.arange(n // group_size), group_size)
    batches = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=groups, seed=0)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = mlvae_tf.MLVAE(INPUT_SHAPE, LATENT, LATENT, hidden_units=HIDDEN, seed=0)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    times = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: times.append(time.perf_counter()))
    model.fit(batches, epochs=1, verbose=0, callbacks=[clock])
    step = statistics.median(np.diff(times[5:]))

    @tf.function
    def all_reduce():  # the step's gradient all-reduce alone, on tensors of the gradients' shapes
        return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.ones(w.shape) for w in model.trainable_weights]))

    reduce_times = []
    for _ in range(12):
        started = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), strategy.experimental_local_results(all_reduce()))
        reduce_times.append(time.perf_counter() - started)
    if index == 0:
        gradient_bytes = 4 * sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(json.dumps({"step_s": step, "gradient_bytes": gradient_bytes,
                          "all_reduce_s": statistics.median(reduce_times[2:])}))


def free_ports(count):
    """`count` ports of 127.0.0.1 free at the time of the call."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def measure(workers, groups, group_size, steps):
    """Runs `workers` worker processes; returns worker 0's JSON result."""
    ports = free_ports(workers)
    threads = max(1, (os.cpu_count() or 1) // workers)
    processes = [subprocess.Popen([sys.executable, "-m", "benchmarks.distributed", "--worker", str(i),
                                   "--ports", ",".join(map(str, ports)), "--groups", str(groups),
                                   "--group-size", str(group_size), "--steps", str(steps),
                                   "--threads", str(threads)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(workers)]
    outputs = [p.communicate(timeout=1800) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        if p.returncode:
            raise RuntimeError(f"a worker exited {p.returncode}:\n{err[-3000:]}")
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return _worker(args.worker, args.ports.split(","), args.groups, args.group_size, args.steps, args.threads)
    base = None
    for workers in map(int, args.workers.split(",")):
        result = measure(workers, args.groups, args.group_size, args.steps)
        throughput = args.groups * args.group_size / result["step_s"]
        base = base or throughput
        print(json.dumps({"workers": workers, "obs_per_s": round(throughput, 1),
                          "speedup": round(throughput / base, 3),
                          "efficiency_per_worker": round(throughput / base / workers, 3),
                          "step_ms": round(1e3 * result["step_s"], 1),
                          "all_reduce_ms": round(1e3 * result["all_reduce_s"], 1),
                          "gradient_mb_per_step": round(result["gradient_bytes"] / 1e6, 2),
                          "ring_mb_per_worker_per_step": round(2 * (workers - 1) / workers
                                                               * result["gradient_bytes"] / 1e6, 2),
                          "cores": os.cpu_count()}), flush=True)


if __name__ == "__main__":
    main()
