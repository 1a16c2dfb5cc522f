"""Export of trained ML-VAE models: SavedModels for TF Serving, ONNX for ONNX Runtime.

Depends only on the model's public API (`encode`, `encode_groups`, `decode_params`).
"""

from export.exporter import FORMATS, ExportError, export_model

__all__ = ["FORMATS", "ExportError", "export_model"]
