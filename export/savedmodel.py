"""SavedModel encoders and decoders for TF Serving, written with `keras.export.ExportArchive`."""

import keras

from export import signatures

__all__ = ["write_encoder", "write_decoder"]


def _write(model, endpoints, path):
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, input_signature) in endpoints.items():
        archive.add_endpoint(name=name, fn=fn, input_signature=input_signature)
    archive.write_out(str(path), verbose=False)


def write_encoder(model, path):
    """Writes the encoder SavedModel at `path`: signatures `serving_default` (images ->
    style_mean, style_log_var, content_mean, content_log_var) and `encode_groups` (images,
    group_ids -> content_mean, content_log_var [G, d], style_mean, style_log_var [N, d])."""
    fns = signatures.functions(model)
    _write(model, {signatures.ENCODER: fns["encoder"], signatures.GROUP_ENCODER: fns["group_encoder"]}, path)


def write_decoder(model, path):
    """Writes the decoder SavedModel at `path`: signature `serving_default` (content, style ->
    mean, plus log_var for the "normal" likelihood)."""
    _write(model, {signatures.DECODER: signatures.functions(model)["decoder"]}, path)
