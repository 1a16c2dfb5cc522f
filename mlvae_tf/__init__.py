"""mlvae_tf: the Multi-Level Variational Autoencoder (Bouchacourt, Tomioka and Nowozin, 2017)
in Keras 3 and TensorFlow."""

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) hides our own messages; a user's
# own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# XLA on the CPU: TensorFlow 2.21 hands some ops to YNNPACK, whose thread pool then contends with
# the matrix products on the same cores; without it the XLA training step is 5-7% faster
# (benchmarks/README.md). Read at the first XLA compilation of the process, so it is set here;
# an `XLA_FLAGS` that already names the flag wins. GPUs are not affected. XLA aborts on a flag it
# does not know: this one exists in the TensorFlow that setup.py pins (2.21), and
# tests/test_model.py compiles with it, so a later TensorFlow that drops it fails that test first.
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def _xla_flags(flags):
    """`XLA_FLAGS` with YNNPACK fusions off, unless `flags` (the user's, or None) already names the flag."""
    flags = flags or ""
    return flags if _YNN_FLAG in flags else f"{flags} {_YNN_FLAG}=".strip()


os.environ["XLA_FLAGS"] = _xla_flags(os.environ.get("XLA_FLAGS"))

__version__ = "0.1.0"

_MODULES = ("data", "distributions", "evaluation", "grouping", "losses", "networks", "posterior")
_MODELS = ("MLVAE", "MultiLevelVAE", "VAE", "RegularisedVAE", "SVI")


def __getattr__(name):
    """The package's names, imported on first use (PEP 562) in the `mlvae` command's process."""
    import importlib

    if name in _MODULES:
        return importlib.import_module(f"mlvae_tf.{name}")
    if name in _MODELS:
        return getattr(importlib.import_module("mlvae_tf.models"), name)
    if name == "GroupPosterior":
        return importlib.import_module("mlvae_tf.posterior").GroupPosterior
    raise AttributeError(f"module 'mlvae_tf' has no attribute {name!r}")


def _command_process():
    """Whether this process runs one of the package's commands: `mlvae`, or `python -m` with
    `mlvae_tf.<command>` (Python names the main module "-m" while it imports its package) or
    `export`, whose `__main__` imports this package."""
    first = sys.argv[0] if sys.argv else ""
    return os.path.basename(first) == "mlvae" or first == "-m" or first.endswith(os.path.join("export", "__main__.py"))


# `import mlvae_tf` imports TensorFlow and registers the models with Keras (so that
# `keras.models.load_model` finds them), except in the commands, whose `--help` and argument
# errors answer without TensorFlow (6-8 s on 2 cores); they import what they use, quietly
# (`mlvae_tf.errors.import_tensorflow`).
if not _command_process():
    from mlvae_tf import data, distributions, evaluation, grouping, losses, networks, posterior  # noqa: E402, F401
    from mlvae_tf.models import MLVAE, SVI, VAE, MultiLevelVAE, RegularisedVAE  # noqa: E402, F401
    from mlvae_tf.posterior import GroupPosterior  # noqa: E402, F401

__all__ = ["MLVAE", "MultiLevelVAE", "VAE", "RegularisedVAE", "SVI", "GroupPosterior", "data", "distributions", "evaluation", "grouping",
           "losses", "networks", "posterior", "__version__"]
