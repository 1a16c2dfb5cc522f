"""ONNX encoders and decoder with tf2onnx, for ONNX Runtime."""

import onnx
import tensorflow as tf
import tf2onnx

from export import signatures

__all__ = ["OPSET", "write_onnx"]

OPSET = 17


def write_onnx(model, directory):
    """Writes `encoder.onnx`, `group_encoder.onnx` and `decoder.onnx` in `directory`.

    Inputs and outputs keep the SavedModel names; the batch dimension is dynamic. Every file
    passes `onnx.checker`.

    Returns:
        dict `{"encoder" | "group_encoder" | "decoder": path}`.
    """
    paths = {}
    for name, (fn, input_signature) in signatures.functions(model).items():
        proto, _ = tf2onnx.convert.from_function(
            tf.function(fn), input_signature=input_signature, opset=OPSET
        )
        onnx.checker.check_model(proto, full_check=True)
        path = f"{directory}/{signatures.ONNX_FILES[name]}"
        onnx.save(proto, path)
        paths[name] = path
    return paths
