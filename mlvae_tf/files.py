"""Files written whole or not at all: a temporary file in the same folder, renamed into place."""

import contextlib
import os

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path` (same folder, same extension) to write to; renames it
    to `path` when the block ends, removes it when the block raises. A process killed mid-write
    leaves the old `path` (or none) and a hidden `.<name>.tmp-<pid>` file, never a truncated `path`.

    Example:
        >>> with atomic_path("report/metrics.json") as tmp:
        ...     with open(tmp, "w") as f:
        ...         json.dump(metrics, f)
    """
    folder, base = os.path.split(os.path.abspath(os.fspath(path)))
    extension = os.path.splitext(base)[1]
    tmp = os.path.join(folder, f".{base}.tmp-{os.getpid()}{extension}")
    try:
        yield tmp
        os.replace(tmp, os.fspath(path))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
