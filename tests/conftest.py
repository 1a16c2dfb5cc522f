"""Shared fixtures: seeded, tiny and odd-sized, and one trained digits model per session."""

import contextlib
import os
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mlvae_tf  # noqa: E402

INPUT_SHAPE = (8, 8, 1)
CONTENT_DIM = 5
STYLE_DIM = 3
TRAIN_EPOCHS = 30


_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0"}


class NetworkDisabledError(ConnectionError):
    """A test reached for the network: the package and its tests run offline."""


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """Any attempt to resolve or reach a host other than this machine fails loudly (the error
    names the host), in this process; subprocesses and kernels are unaffected."""
    import socket

    patch = pytest.MonkeyPatch()
    getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS:
            raise NetworkDisabledError(f"a test tried to resolve {host!r}: tests run offline")
        return getaddrinfo(host, *args, **kwargs)

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOCAL_HOSTS:
            raise NetworkDisabledError(f"a test tried to connect to {address!r}: tests run offline")
        return connect(self, address)

    patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    patch.setattr(socket.socket, "connect", guarded_connect)
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


def make_tiny_model(**kwargs):
    config = dict(input_shape=INPUT_SHAPE, content_dim=CONTENT_DIM, style_dim=STYLE_DIM, hidden_units=17, seed=0)
    config.update(kwargs)
    return mlvae_tf.MLVAE(**config)


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A TFDS data_dir with `grouped_shapes/small` (32x32x3, 3,000 images) built once, with every
    socket refused: the build needs no network."""
    import socket

    import tensorflow_datasets as tfds

    import mlvae_tf.data.grouped_shapes  # noqa: F401  (registers the builder)

    data_dir = tmp_path_factory.mktemp("tfds")
    connect = socket.socket.connect

    def refuse(*args, **kwargs):
        raise OSError("network access during the build")

    socket.socket.connect = refuse
    try:
        tfds.builder("grouped_shapes/small", data_dir=str(data_dir)).download_and_prepare()
    finally:
        socket.socket.connect = connect
    return data_dir


@pytest.fixture(scope="session")
def digits_split():
    """Observation split of the digits (all 10 groups in every part): 70% / 15% / 15%."""
    return mlvae_tf.data.digits_splits(seed=0)


@pytest.fixture(scope="session")
def trained(digits_split):
    """One ML-VAE trained on the digits for the session's end-to-end tests, with its history and
    the validation loss before training."""
    keras.utils.set_random_seed(0)
    x, labels = digits_split["train"]
    ds = mlvae_tf.data.grouped_dataset(x, labels, groups_per_batch=8, max_group_size=10, seed=0)
    val = mlvae_tf.data.grouped_dataset(*digits_split["val"], groups_per_batch=8, max_group_size=10, shuffle=False)
    model = mlvae_tf.MLVAE(input_shape=INPUT_SHAPE, content_dim=7, style_dim=STYLE_DIM,
                           hidden_units=128, likelihood="bernoulli", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    history = model.fit(ds, validation_data=val, epochs=TRAIN_EPOCHS, verbose=0)
    return model, history.history, before


@pytest.fixture(scope="session")
def trained_file(trained, tmp_path_factory):
    """The session's trained model saved once, as `mlvae train` leaves it: a `.keras` path
    without a run folder (no `config.yaml` beside it)."""
    path = tmp_path_factory.mktemp("trained") / "model.keras"
    trained[0].save(path)
    return path


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The session's trained model exported with `python -m export`'s function: (model, root folder)."""
    from export import export_model

    out = tmp_path_factory.mktemp("savedmodels")
    export_model(trained[0], out, "digits")
    return trained[0], out / "digits"


def run_cli(capsys, *args):
    """`mlvae ARGS` in this process (one console-script test, `one_epoch_run` in test_cli, runs
    the installed command): `(exit status, stdout, stderr)`, as the shell would see them."""
    from mlvae_tf.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    if isinstance(status, str):  # sys.exit(message): the message on stderr, status 1
        status, err = 1, err + status + "\n"
    return status or 0, out, err


# Subprocesses: a hang fails its test within SUBPROCESS_TIMEOUT seconds instead of blocking the suite.
SUBPROCESS_TIMEOUT = 600


def run(args, check=True, timeout=SUBPROCESS_TIMEOUT, **kwargs):
    """`subprocess.run(args)` with text output captured and a timeout; with `check`, a failure
    raises an `AssertionError` that shows the end of the child's stderr."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(map(str, args))[:200]} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@contextlib.contextmanager
def child(args, **kwargs):
    """`subprocess.Popen(args)` that is killed when the block ends, whatever happens in it."""
    process = subprocess.Popen([str(a) for a in args], **kwargs)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)


def wait_for(condition, process, timeout=300, interval=0.1):
    """Polls `condition()` while `process` runs, until it gives a true value (returned) or
    `timeout` seconds pass (an `AssertionError`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the child exited ({process.returncode}) before the condition held")
        time.sleep(interval)
    raise AssertionError(f"the condition did not hold within {timeout} s")


def assert_one_line_error(status, err, message):
    """A command failed cleanly: non-zero status, one line on stderr that holds `message`, no traceback."""
    lines = err.strip().splitlines()
    assert status != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in err, (status, err[-2000:])


def random_images(n, shape=INPUT_SHAPE, seed=0):
    """`[n, *shape]` float32 images uniform in [0, 1]."""
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype(np.float32)


def numpy_hsic(features, ids, bandwidth=None):
    """tr(K H L H) / n^2 in NumPy, on the rows with an id >= 0; without a bandwidth, 2 bandwidth^2
    is the mean squared distance of two different rows."""
    features, ids = features[ids >= 0].astype(np.float64), ids[ids >= 0]
    n = len(ids)
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    scale = 2 * bandwidth**2 if bandwidth else distances.sum() / (n * (n - 1))
    k = np.exp(-distances / scale)
    same = (ids[:, None] == ids[None]).astype(np.float64)
    h = np.eye(n) - 1.0 / n
    return np.trace(k @ h @ same @ h) / n**2


def numpy_group_variance(features, ids, ridge=1e-3):
    """Pillai's trace over d in NumPy, on the rows with an id >= 0: tr(S_t^-1 S_b) / d, S_t the
    rows' covariance plus ridge * its mean variance, S_b that of the group means, weighted by size."""
    features, ids = features[ids >= 0].astype(np.float64), ids[ids >= 0]
    n, d = features.shape
    centred = features - features.mean(0)
    total = centred.T @ centred / n
    between = sum((ids == g).sum() * np.outer(centred[ids == g].mean(0), centred[ids == g].mean(0))
                  for g in np.unique(ids)) / n
    return np.trace(np.linalg.solve(total + ridge * np.trace(total) / d * np.eye(d), between)) / d


@contextlib.contextmanager
def precision_policy(name):
    """Keras's global dtype policy set to `name` inside the block, float32 after it."""
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def numpy_critic_pairs(ids):
    """The critic's pairs, recomputed in NumPy: the batch sorted by group; each row with the next
    row (a positive but for a group's last) and with the row its group's size further on."""
    order = np.argsort(ids, kind="stable")
    sizes = np.bincount(ids)
    n = len(ids)
    near = order[np.minimum(np.arange(n) + 1, n - 1)]
    far = order[(np.arange(n) + sizes[ids[order]]) % n]
    return [(order, near), (order, far)]
