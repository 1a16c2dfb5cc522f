"""Checks an export folder against its manifest: every file listed, with the SHA-256 it was written with."""

import json
import os

from export.exporter import _sha256

__all__ = ["verify_export"]


def verify_export(root):
    """Whether the export in `root` (e.g. `savedmodels/digits`) is intact.

    Returns:
        dict: `intact` (bool), `missing` (files the manifest lists that are gone), `altered` (files
        whose SHA-256 differs), `unlisted` (files the manifest does not know), `manifest` (its path).
    """
    path = os.path.join(root, "manifest.json")
    if not os.path.isfile(path):
        return {"intact": False, "manifest": path, "error": "no manifest.json: not an export folder, or "
                                                             "an export cut short before its manifest"}
    with open(path) as f:
        files = json.load(f)["files"]
    present = {os.path.relpath(os.path.join(folder, name), root) for folder, _, names in os.walk(root)
               for name in names}
    present = {p for p in present if p != "manifest.json" and not p.startswith(".")}
    missing = sorted(p for p in files if p not in present)
    altered = sorted(p for p in files if p in present and _sha256(os.path.join(root, p)) != files[p])
    unlisted = sorted(present - set(files))
    return {"intact": not (missing or altered or unlisted), "missing": missing, "altered": altered,
            "unlisted": unlisted, "manifest": path}
