"""Export of trained ML-VAE models: SavedModels for TF Serving, ONNX for ONNX Runtime.

Depends only on the model's public API (`encode`, `encode_groups`, `decode_params`). Its names
are imported on first use (PEP 562), so that `python -m export --help` answers without TensorFlow.
"""

__all__ = ["FORMATS", "ExportError", "export_model"]


def __getattr__(name):
    if name in __all__:
        from export import exporter

        return getattr(exporter, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
