"""Command-line error reporting, in one module below every command (`mlvae`, `python -m
mlvae_tf.evaluate`, `python -m export`, `mlvae compare`); the library never imports the commands.

A command's error is one line, `prog: error: ...`, and a non-zero exit status: 2 for a bad
argument (argparse's convention), 1 for input that cannot be used. The commands check what they
can before TensorFlow is imported (`import_tensorflow`, which also keeps its start-up notes off
the terminal), so that `--help` and argument errors answer at once.
"""

import argparse
import os
import re
import sys
import tempfile

__all__ = ["OneLineParser", "import_tensorflow", "load_model", "positive_int"]


def positive_int(text):
    """An argparse `type`: an integer >= 1 (argparse then names the flag in its one-line error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


# TensorFlow's C++ start-up notes, written to stderr at import (and at the CUDA probe) before
# TF_CPP_MIN_LOG_LEVEL is read: oneDNN, CPU features, no CUDA driver.
_STARTUP_NOTE = re.compile(r"WARNING: All log messages before absl::InitializeLog|I\d{4} |E\d{4} .*(cuInit|CUDA|cuda)|"
                           r"To enable the following instructions")


def import_tensorflow():
    """Imports TensorFlow and probes its devices with the start-up notes held back (the commands
    print only their own lines); any other line TensorFlow writes passes through. The commands
    call it once their arguments have passed the checks that need no TensorFlow."""
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not _STARTUP_NOTE.match(line):
                    sys.stderr.write(line)


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (`prog: error: ...`), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def fail(self, message):
        """Input that cannot be used: one line, exit status 1."""
        self.exit(1, f"{self.prog}: error: {message}\n")


def load_model(path, parser, flag="--model"):
    """The `.keras` model at `path` (`mlvae_tf.files.load_model`: safe mode), or one line naming
    `flag` and what is wrong: no such file (exit 2), or a file that cannot be loaded (exit 1): not
    a `.keras` archive, a truncated or corrupt one, or one that safe mode refuses."""
    if not os.path.isfile(path):
        parser.error(f"{flag}: no such file {path!r}")
    import_tensorflow()
    from mlvae_tf.files import ModelFileError, load_model as load

    try:
        return load(path)
    except ModelFileError as error:
        parser.fail(str(error).replace("`model`", flag, 1))
