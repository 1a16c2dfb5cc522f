"""Writes a trained model's SavedModels, ONNX files and manifest, each atomically.

A TF Serving model base path must never show a half-written version folder: each version is
written under a temporary name that TF Serving ignores (it is not a number) and renamed into
place; an existing version is replaced only with `overwrite=True`.
"""

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile

import keras

from export import onnx as onnx_export
from export import savedmodel, signatures
from mlvae_tf.files import ModelFileError, load_model
from mlvae_tf.progress import progress_bar

__all__ = ["FORMATS", "ExportError", "export_model"]

FORMATS = ("savedmodel", "onnx")


class ExportError(ValueError):
    """An export that cannot be done as asked; nothing has been written."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _versions():
    names = ("mlvae_tf", "tensorflow", "keras", "tf2onnx", "onnx")
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _replace_dir(tmp, final):
    """Moves the finished folder `tmp` to `final`, replacing an old `final` if any."""
    if os.path.exists(final):
        trash = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(final))
        os.rename(final, os.path.join(trash, "old"))
        os.rename(tmp, final)
        shutil.rmtree(trash)
    else:
        os.rename(tmp, final)


def _write_folder(final, write, prefix):
    """Runs `write(folder)` on a new temporary folder next to `final`, then renames it into place."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temporaries(parent)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(tmp, 0o755)
    write(tmp)
    _replace_dir(tmp, final)


def _remove_stale_temporaries(folder):
    """Removes temporary folders left by an export that was killed."""
    if os.path.isdir(folder):
        for entry in os.listdir(folder):
            if entry.startswith((".tmp-", ".old-")):
                shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)


def export_model(model, out, name, version=1, formats=FORMATS, overwrite=False, progress=False):
    """Exports `model` (an `MLVAE` or the path of a `.keras` file) under `out/name/`.

    Writes `encoder/<version>/` and `decoder/<version>/` (SavedModels), `onnx/encoder.onnx`,
    `onnx/group_encoder.onnx`, `onnx/decoder.onnx` and `manifest.json` (input shape, latent
    sizes, likelihood, package versions, SHA-256 of every file). The ONNX files and the manifest
    describe the latest export.

    `progress` shows a progress bar over the writing steps (each takes seconds).

    Returns:
        The manifest, a dict.

    Raises:
        ExportError: a version folder already exists and `overwrite` is False, or bad arguments;
            nothing is written then.
    """
    formats = tuple(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"`formats` must be a non-empty subset of {FORMATS}, got {formats}.")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ExportError(f"`version` must be an integer >= 1, got {version!r}.")
    if not name or os.sep in name or name.startswith("."):
        raise ExportError(f"`name` must be a plain folder name, got {name!r}.")
    if os.path.exists(os.fspath(out)) and not os.path.isdir(os.fspath(out)):
        raise ExportError(f"`out` must be a folder, got the file {os.fspath(out)!r}.")
    if not isinstance(model, keras.Model):
        if not isinstance(model, (str, os.PathLike)):
            raise ExportError(f"`model` must be a Keras model or the path of a .keras file, got {type(model).__name__}.")
        try:
            model = load_model(model)
        except ModelFileError as error:
            raise ExportError(str(error)) from None
    if not getattr(model, "AMORTISED", True):
        raise ExportError(f"`model`: a {type(model).__name__} has no encoder to export: its posteriors are "
                          "optimised for each new image (test-time inference), not computed by a network.")
    root = os.path.join(os.fspath(out), name)
    targets = {part: os.path.join(root, part, str(version)) for part in ("encoder", "decoder")}
    if "savedmodel" in formats and not overwrite:
        existing = [path for path in targets.values() if os.path.exists(path)]
        if existing:
            raise ExportError(f"{existing[0]} already exists; pass --overwrite (overwrite=True) to replace it.")

    jobs = []  # (final folder, writer of a folder, temporary-name prefix)
    if "savedmodel" in formats:
        jobs += [(targets["encoder"], lambda path: savedmodel.write_encoder(model, path), f".tmp-{version}-"),
                 (targets["decoder"], lambda path: savedmodel.write_decoder(model, path), f".tmp-{version}-")]
    if "onnx" in formats:
        jobs.append((os.path.join(root, "onnx"), lambda path: onnx_export.write_onnx(model, path), ".tmp-onnx-"))
    bar = progress_bar(len(jobs), unit_name="file set") if progress else None
    for final, write, prefix in jobs:
        _write_folder(final, write, prefix)
        if bar is not None:
            bar.add(1)

    files = {}
    for folder, _, names in os.walk(root):
        for file in names:
            path = os.path.join(folder, file)
            relative = os.path.relpath(path, root)
            if relative != "manifest.json" and not relative.startswith("."):
                files[relative] = _sha256(path)
    manifest = {
        "name": name,
        "version": version,
        "formats": list(formats),
        "input_shape": list(model.input_shape),
        "content_dim": model.content_dim,
        "style_dim": model.style_dim,
        "likelihood": model.likelihood,
        "architecture": model.architecture,
        "model": type(model).__name__,
        "aggregation": getattr(model, "aggregation", "product"),  # of the group encoder
        "inputs": signatures.CONTRACT,
        "onnx_opset": onnx_export.OPSET,
        "packages": _versions(),
        "files": dict(sorted(files.items())),
    }
    tmp = os.path.join(root, ".tmp-manifest.json")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(root, "manifest.json"))
    return manifest
