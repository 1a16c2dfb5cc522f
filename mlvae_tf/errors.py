"""Command-line error reporting, in one module below every command (`mlvae`, `python -m
mlvae_tf.evaluate`, `python -m export`, `mlvae compare`); the library never imports the commands.

A command's error is one line, `prog: error: ...`, and a non-zero exit status: 2 for a bad
argument (argparse's convention), 1 for input that cannot be used.
"""

import argparse
import os

__all__ = ["OneLineParser", "load_model"]


class OneLineParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (`prog: error: ...`), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def fail(self, message):
        """Input that cannot be used: one line, exit status 1."""
        self.exit(1, f"{self.prog}: error: {message}\n")


def load_model(path, parser, flag="--model"):
    """The `.keras` model at `path`, loaded in Keras's safe mode (no arbitrary code, no lambdas),
    or one line naming `flag` and what is wrong: no such file, not a `.keras` archive, a
    truncated or corrupt one, or one that safe mode refuses."""
    import keras

    import mlvae_tf  # noqa: F401  (registers the models)

    if not os.path.isfile(path):
        parser.error(f"{flag}: no such file {path!r}")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # noqa: BLE001  (Keras raises many types; each becomes one line)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        parser.fail(f"{flag}: cannot load {path!r} as a Keras model ({type(error).__name__}: {first})")
