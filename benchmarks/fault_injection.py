"""Kills training, export and evaluation with SIGKILL at random moments and checks that nothing
written is corrupt and nothing is lost.

python -m benchmarks.fault_injection [--kills 4] [--seed 0] [--out /tmp/faults] [--parts train,export,evaluate]

- train: `mlvae train` on a small digits config is killed `--kills` times at random moments, and
  started again with the same command each time until it finishes. Every `.keras` file of the run
  folder must load, `history.csv` must parse with epochs 1, 2, ... without a gap, and the final
  weights must equal an uninterrupted run's with the same seed (bit for bit: TensorFlow is
  deterministic for this model on the CPU).
- export: `python -m export` is killed `--kills` times, then run to the end: every version folder
  is complete (its SavedModel loads) or absent, and the finished export is intact against its
  manifest (`export.verify`).
- evaluate: `mlvae evaluate` is killed `--kills` times, then run to the end: every report file that
  exists parses (JSON, PNG), and the finished report has all of them.

Prints one markdown row per part: faults injected, runs recovered, files corrupt, data lost, and
temporary files left behind by the kills once the part is done (a later write removes them).
"""

import argparse
import csv
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLVAE = [os.path.join(os.path.dirname(sys.executable), "mlvae")]
TRAIN = ["train", "--set", "train.epochs=4", "--set", "model.hidden_units=32", "--set", "data.groups_per_batch=2",
         "--set", "train.steps_per_execution=1", "--set", "train.grid_every=2"]  # about 20 s, start-up included
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _kill_at_random(command, rng, start, stop):
    """Starts `command`, kills it with SIGKILL after a random time in [start, stop) seconds if it
    is still running; returns True if it was killed."""
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=rng.uniform(start, stop))
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True


def _run(command):
    """Runs `command` to the end; returns its wall time in seconds."""
    start = time.time()
    subprocess.run(command, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=900)
    return time.time() - start


def _until_done(command, kills, rng, duration, check, done):
    """Starts `command` again and again, killing it at a random moment of its expected `duration`
    (between 20% and 95% of it) at most `kills` times, then lets it finish; `check()` counts the
    corrupt files after each kill, `done()` says whether the work is complete (a kill can land
    after that, while the process exits). Returns `(faults injected, files corrupt)`."""
    injected = corrupt = 0
    while injected < kills:
        killed = _kill_at_random(command, rng, 0.2 * duration, 0.95 * duration)
        injected += killed
        corrupt += check()
        if not killed or done():
            return injected, corrupt
    _run(command)
    return injected, corrupt + check()


def _keras_files_corrupt(folder):
    import keras

    import mlvae_tf  # noqa: F401

    corrupt = []
    for path in glob.glob(os.path.join(folder, "**", "*.keras"), recursive=True):
        try:
            keras.models.load_model(path)
        except Exception:  # noqa: BLE001
            corrupt.append(path)
    return corrupt


def _history_epochs(run_dir):
    path = os.path.join(run_dir, "history.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _weights(path):
    import keras

    import mlvae_tf  # noqa: F401

    return keras.models.load_model(path).get_weights()


def _temporaries(folder):
    """Temporary files and folders (`mlvae_tf.files.atomic_path`'s, the exporter's) left under `folder`."""
    return sorted(os.path.join(root, name) for root, dirs, files in os.walk(folder) for name in dirs + files
                  if name.startswith((".tmp-", ".old-")) or ".tmp-" in name)


def inject_train(kills, rng, out):
    import numpy as np

    reference, faulty = os.path.join(out, "reference"), os.path.join(out, "faulty")
    duration = _run(MLVAE + TRAIN + ["--runs-dir", reference])
    injected, corrupt = _until_done(MLVAE + TRAIN + ["--runs-dir", faulty], kills, rng, duration,
                                    lambda: len(_keras_files_corrupt(faulty)),
                                    lambda: bool(glob.glob(os.path.join(faulty, "digits", "2*", "model.keras"))))
    (run_dir,) = glob.glob(os.path.join(faulty, "digits", "2*"))  # one run, resumed after every kill
    (expected,) = glob.glob(os.path.join(reference, "digits", "2*", "model.keras"))
    same = all(np.array_equal(a, b) for a, b in zip(_weights(os.path.join(run_dir, "model.keras")), _weights(expected)))
    lost = not same or _history_epochs(run_dir) != [1, 2, 3, 4]  # a missing, repeated or changed epoch
    return {"part": "train", "faults": injected, "recovered": int(same), "corrupt": corrupt, "lost": int(lost),
            "left": len(_temporaries(faulty))}


def inject_export(kills, rng, out):
    import tensorflow as tf

    from export.verify import verify_export

    model = glob.glob(os.path.join(out, "reference", "digits", "2*", "model.keras"))[0]
    command = [sys.executable, "-m", "export", "--model", model, "--out", os.path.join(out, "savedmodels"),
               "--name", "digits", "--overwrite"]
    duration = _run(command)

    def check():
        corrupt = 0
        for version in glob.glob(os.path.join(out, "savedmodels", "digits", "*", "[0-9]*")):
            try:
                tf.saved_model.load(version)
            except Exception:  # noqa: BLE001
                corrupt += 1
        return corrupt

    injected, corrupt = _until_done(command, kills, rng, duration, check,
                                    lambda: verify_export(os.path.join(out, "savedmodels", "digits"))["intact"])
    report = verify_export(os.path.join(out, "savedmodels", "digits"))
    return {"part": "export", "faults": injected, "recovered": int(report["intact"]), "corrupt": corrupt,
            "lost": int(not report["intact"]), "left": len(_temporaries(os.path.join(out, "savedmodels")))}


def _report_corrupt(folder):
    import matplotlib.image

    corrupt = []
    for path in glob.glob(os.path.join(folder, "*")):
        try:
            if path.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            elif path.endswith(".png"):
                matplotlib.image.imread(path)
        except Exception:  # noqa: BLE001
            corrupt.append(path)
    return corrupt


def inject_evaluate(kills, rng, out):
    model = glob.glob(os.path.join(out, "reference", "digits", "2*", "model.keras"))[0]
    report = os.path.join(out, "report")
    command = MLVAE + ["evaluate", "--model", model, "--out", report, "--trials", "2"]
    duration = _run(command)
    shutil.rmtree(report)
    names = {"swap_grid.png", "swap_grid_evidence.png", "interpolation.png", "generation.png", "evidence.png",
             "protocol.png", "metrics.json"}
    injected, corrupt = _until_done(command, kills, rng, duration, lambda: len(_report_corrupt(report)),
                                    lambda: names <= set(os.listdir(report)) if os.path.isdir(report) else False)
    complete = names <= set(os.listdir(report))
    return {"part": "evaluate", "faults": injected, "recovered": int(complete), "corrupt": corrupt,
            "lost": int(not complete), "left": len(_temporaries(report))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/mlvae_faults")
    parser.add_argument("--parts", default="train,export,evaluate")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    rng = random.Random(args.seed)
    parts = {"train": inject_train, "export": inject_export, "evaluate": inject_evaluate}
    rows = []
    start = time.time()
    for name in ("train", "export", "evaluate"):
        if name in args.parts.split(","):
            rows.append(parts[name](args.kills, rng, args.out))
    print("| Part | faults injected | runs recovered | files corrupt | data lost | temporary files left |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['part']} | {row['faults']} | {row['recovered']} of 1 | {row['corrupt']} | {row['lost']} | "
              f"{row['left']} |")
    print(f"({time.time() - start:.0f} s)")
    return rows


if __name__ == "__main__":
    main()
