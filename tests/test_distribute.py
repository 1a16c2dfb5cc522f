"""tf.distribute: whole groups per replica, the global batch's loss, and several workers."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.distributed import free_ports
from mlvae_tf.data import grouped_dataset, largest_batch, to_pairs
from mlvae_tf.data.replicas import balance, distribute, replica_batch

from .conftest import child, run, wait_for

FIXTURES = Path(__file__).parent / "fixtures"


def _greedy(sizes, num_replicas):
    """NumPy re-computation of `balance`: largest group first, to the least loaded replica."""
    loads, owner = np.zeros(num_replicas, int), np.zeros(len(sizes), int)
    for group in sorted(range(len(sizes)), key=lambda g: (-sizes[g], g)):
        owner[group] = int(np.argmin(loads))
        loads[owner[group]] += sizes[group]
    return owner


@pytest.mark.parametrize("num_replicas", [1, 2, 3, 5])
def test_balance_is_the_greedy_assignment_within_its_bound(num_replicas):
    rng = np.random.default_rng(num_replicas)
    for _ in range(20):
        sizes = rng.integers(1, 30, size=rng.integers(1, 12))
        owner = balance(tf.constant(sizes), num_replicas).numpy()
        np.testing.assert_array_equal(owner, _greedy(sizes, num_replicas))
        loads = np.bincount(owner, weights=sizes, minlength=num_replicas)
        if len(sizes) >= num_replicas:
            assert loads.max() - loads.min() <= sizes.max()
        assert loads.max() <= (sizes.sum() + (num_replicas - 1) * sizes.max()) // num_replicas


def _groups(batch):
    """A batch's groups as sets of image values (column 0 of [N, K] ids)."""
    if isinstance(batch, tf.RaggedTensor):
        return [frozenset(row.numpy().ravel().tolist()) for row in batch]
    images, ids = batch[0].numpy(), batch[1].numpy()
    ids = ids if ids.ndim == 1 else ids[:, 0]
    num_groups = int(ids.max()) + 1 if (ids >= 0).any() else 0
    assert set(ids[ids >= 0].tolist()) == set(range(num_groups)), "ids contiguous from 0"
    return [frozenset(images[ids == g].ravel().tolist()) for g in range(num_groups)]


@pytest.mark.parametrize("form", ["ragged", "pairs", "padded", "two_groupings"])
@pytest.mark.parametrize("num_replicas", [2, 3])
def test_replica_batches_hold_whole_groups_and_together_the_global_batch(form, num_replicas):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 9, size=57)
    x = np.arange(57, dtype=np.float32).reshape(57, 1, 1, 1)  # an image is its index
    batches = grouped_dataset(x, labels, groups_per_batch=4, shuffle=False)
    pad = largest_batch(labels, 4, num_replicas=num_replicas)
    for batch in batches:
        if form == "pairs":
            batch = (batch.flat_values, tf.cast(batch.value_rowids(), tf.int32))
        elif form == "padded":
            batch = next(iter(to_pairs(tf.data.Dataset.from_tensors(batch), pad_to=largest_batch(labels, 4))))
        elif form == "two_groupings":
            ids = tf.cast(batch.value_rowids(), tf.int32)
            batch = (batch.flat_values, tf.stack([ids, tf.unique(ids % 2)[1]], axis=1))
        parts = [replica_batch(batch, r, num_replicas, pad if form == "padded" else None) for r in range(num_replicas)]
        if form == "ragged":
            assert all(isinstance(part, tf.RaggedTensor) for part in parts)
        if form == "padded":
            assert all(part[0].shape[0] == pad for part in parts)
        whole = sorted(map(sorted, _groups(batch)))
        assert sorted(sorted(group) for part in parts for group in _groups(part)) == whole


def test_a_batch_of_fewer_groups_than_replicas_leaves_a_replica_empty():
    batch = tf.RaggedTensor.from_row_lengths(tf.ones([3, 2]), [3])
    parts = [replica_batch(batch, r, 2) for r in range(2)]
    assert [int(p.nrows()) for p in parts] == [1, 0]


def test_largest_batch_per_replica_bounds_every_part():
    labels = np.random.default_rng(3).integers(0, 20, size=300)
    bound = largest_batch(labels, 6, max_group_size=9, num_replicas=4)
    assert bound < largest_batch(labels, 6, max_group_size=9)
    for batch in grouped_dataset(np.zeros((300, 1)), labels, 6, max_group_size=9, seed=0):
        assert max(int(tf.size(replica_batch(batch, r, 4).flat_values)) for r in range(4)) <= bound


def test_distribute_refuses_what_is_not_a_dataset():
    with pytest.raises(ValueError, match="`dataset` must be a tf.data.Dataset"):
        distribute(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="`pad_to`"):
        distribute(tf.data.Dataset.range(3), pad_to=0)


@pytest.fixture(scope="module")
def two_replicas():
    """tests/fixtures/replicas_run.py's results: one device against two logical CPU devices."""
    return json.loads(run([sys.executable, FIXTURES / "replicas_run.py"]).stdout)


CASES = ["ragged", "ragged_unequal", "pairs_unequal", "padded_unequal"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES + ["conv64_padded"])
def test_two_replicas_take_the_one_device_step_on_the_global_batch(two_replicas, case):
    """SGD (where Adam's first step, lr * sign(g), would hide a wrong gradient scale): the weights
    after one step agree to 1e-5 (of the step, for conv64's large one) while the step moved them
    by far more; the logged terms and `evaluate` are the global batch's per-group averages.
    conv64: its batch statistics are the global batch's (`networks.MaskedBatchNormalization`;
    each replica's own statistics give weights 350 apart)."""
    result = two_replicas[case]
    assert result["moved"] > 0.1
    assert result["weights"] < 1e-5 * max(1.0, result["moved"])
    assert result["logs"] < 1e-4 and result["evaluate"] < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES + ["multilevel"])
def test_no_replica_ever_receives_part_of_a_group(two_replicas, case):
    """Every step of an epoch: the replicas' groups are exactly the global batch's groups."""
    steps = two_replicas[case]["received"]
    assert len(steps) >= 4
    for step in steps:
        assert sorted(group for part in step["replicas"] for group in part) == sorted(step["global"])
        assert all(part for part in step["replicas"]) or len(step["global"]) < len(step["replicas"])


def _start_workers(stack, runs, out, env, slow=False):
    """The two workers of tests/fixtures/worker_run.py on two fresh ports of 127.0.0.1, killed
    when `stack` closes."""
    ports = free_ports(2)
    return [stack.enter_context(child(
        [sys.executable, FIXTURES / "worker_run.py", index, *ports, runs, out] + (["slow"] if slow else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) for index in range(2)]


@pytest.mark.slow
def test_two_workers_resume_from_the_backup_after_a_kill_and_end_with_identical_weights(tmp_path):
    """`mlvae_tf.training.train` under `train.strategy=multi_worker`, two processes on 127.0.0.1:
    killed mid-run (both, as a lost machine takes the collective down) and started again, they
    resume from the chief's last backup; only the chief's run folder stays."""
    runs, out, scratch = tmp_path / "runs", tmp_path / "out", tmp_path / "tmp"
    out.mkdir()
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    metadata = runs / "digits" / ".backup" / "training_metadata.json"

    def backed_up():
        return metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2

    with contextlib.ExitStack() as stack:
        chief, _ = _start_workers(stack, runs, out, env, slow=True)
        wait_for(backed_up, chief, timeout=300)
    resumed_at = json.loads(metadata.read_text())["epoch"]
    assert resumed_at < 6 and not list(out.iterdir())  # killed mid-run
    with contextlib.ExitStack() as stack:
        workers = _start_workers(stack, runs, out, env)
        outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "Resuming the interrupted run" in outputs[0][0]
    ran = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
    assert [r["epochs"] for r in ran] == [6 - resumed_at] * 2  # the epochs left, not all six
    run_dir = Path(ran[0]["run_dir"])
    epochs = [int(line.split(",")[0]) for line in (run_dir / "history.csv").read_text().splitlines()[1:]]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 6  # no epoch run twice
    assert (run_dir / "model.keras").exists() and not metadata.parent.exists()
    assert os.listdir(runs / "digits") == [run_dir.name]
    assert not list(scratch.glob("mlvae-worker-*"))  # the other worker's files went, the killed run's too
    weights = [np.load(out / f"weights_{index}.npz") for index in range(2)]
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])


def test_the_strategy_setting_is_checked():
    from mlvae_tf import config, training

    with pytest.raises(config.ConfigError, match="train.strategy"):
        config.load_config(overrides=["train.strategy=horovod"])
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        training.make_strategy("horovod")
    assert training.is_chief(training.make_strategy("none"))
    assert isinstance(training.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
