"""mlvae_tf: the Multi-Level Variational Autoencoder (Bouchacourt, Tomioka and Nowozin, 2017)
in Keras 3 and TensorFlow."""

import os

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

from mlvae_tf import data, distributions, evaluation, grouping, losses, networks  # noqa: E402
from mlvae_tf.models import MLVAE, SVI, VAE, RegularisedVAE  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MLVAE", "VAE", "RegularisedVAE", "SVI", "data", "distributions", "evaluation", "grouping", "losses", "networks", "__version__"]
