"""Files written whole or not at all (a temporary file in the same folder, renamed into place),
model files read with no code run, and scratch folders that do not outlive their process."""

import contextlib
import os
import shutil
import tempfile

__all__ = ["atomic_path", "load_model", "scratch_folder", "ModelFileError"]


class ModelFileError(ValueError):
    """A model file that is missing, not a `.keras` archive, truncated, or refused by safe mode."""


def load_model(path, name="model"):
    """The `.keras` model at `path`, loaded in Keras's safe mode (no arbitrary code, no lambdas).

    Raises:
        ModelFileError: naming `name`: no such file, or what Keras found wrong (not a `.keras`
            archive, truncated or corrupt, or code that safe mode refuses), in one line.
    """
    import keras

    import mlvae_tf.models  # noqa: F401  (registers the models with Keras)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"`{name}`: no such file {path!r}; give the path of a saved .keras model.")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # noqa: BLE001  (Keras raises many types; each becomes one line)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"`{name}`: cannot load {path!r} as a Keras model ({type(error).__name__}: "
                             f"{first})") from None


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same folder, same extension) to write to; renames it
    to `path` when the block ends, removes it when the block raises. A process killed mid-write
    leaves the old `path` (or none) and a hidden `.<name>.tmp-<pid>` file, never a truncated `path`;
    the next write of `path` removes such files of processes that are gone.

    Example:
        >>> with atomic_path("report/metrics.json") as tmp:
        ...     with open(tmp, "w") as f:
        ...         json.dump(metrics, f)
    """
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    extension = os.path.splitext(base)[1]
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}{extension}")
    _remove_stale_temporaries(folder, base, extension)
    try:
        yield tmp
        os.replace(tmp, os.fspath(path))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale_temporaries(folder, base, extension):
    """Removes `atomic_path`'s temporary files for `base` whose process is gone (killed mid-write)."""
    prefix = f".{base}.tmp-"
    for entry in os.listdir(folder) if os.path.isdir(folder) else ():
        pid = entry[len(prefix): len(entry) - len(extension)] if entry.endswith(extension) else ""
        if entry.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))


@contextlib.contextmanager
def scratch_folder(prefix="mlvae-worker-"):
    """A folder `<temporary directory>/<prefix><pid>` that is removed when the block ends; those
    of processes that are gone (killed before they could remove theirs) are removed first."""
    root = tempfile.gettempdir()
    for entry in os.listdir(root):
        pid = entry[len(prefix):]
        if entry.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    folder = os.path.join(root, f"{prefix}{os.getpid()}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
