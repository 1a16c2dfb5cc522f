"""The exported computations and their names, in one place.

Each entry is a deterministic function of the model's public API (`encode`, `encode_groups`,
`decode_params`): posterior parameters and decoder means, no sampling, no TFP ops, so that the
same graph converts to ONNX.
"""

import tensorflow as tf

__all__ = ["ENCODER", "GROUP_ENCODER", "DECODER", "ENCODER_OUTPUTS", "GROUP_OUTPUTS", "CONTRACT", "functions"]

ENCODER = "serving_default"  # encoder SavedModel signature: images -> per-observation posteriors
GROUP_ENCODER = "encode_groups"  # encoder SavedModel signature: images, group_ids -> group posteriors
DECODER = "serving_default"  # decoder SavedModel signature: content, style -> mean (, log_var)
ENCODER_OUTPUTS = ("style_mean", "style_log_var", "content_mean", "content_log_var")
GROUP_OUTPUTS = ("content_mean", "content_log_var", "style_mean", "style_log_var")
ONNX_FILES = {"encoder": "encoder.onnx", "group_encoder": "group_encoder.onnx", "decoder": "decoder.onnx"}
# What the exported models take, written into manifest.json: the checks of the graphs themselves
# cannot see a wrong scale, and ONNX Runtime refuses other dtypes with a type error.
CONTRACT = {
    "images": "float32 [batch, *input_shape], pixels scaled to [0, 1] (0-255 values give other latents, silently)",
    "group_ids": "int32 [batch] (not int64), integers in [0, G) with at least one image in every group, "
                 "G = max(group_ids) + 1; renumber labels with mlvae_tf.data.group_index; -1 and gaps are refused",
    "content": "float32 [batch, content_dim]",
    "style": "float32 [batch, style_dim]",
}


def functions(model):
    """The three exported computations of `model`.

    Returns:
        dict `{"encoder" | "group_encoder" | "decoder": (fn, input_signature)}`; each `fn` takes
        the named tensors of its signature and returns a dict of float32 tensors. For a
        `MultiLevelVAE`, the group encoder takes `images` and one `group_ids_<grouping>` per
        grouping, and returns `<grouping>_mean`, `<grouping>_log_var` [G_k, d_k] and the styles.
    """
    images = tf.TensorSpec([None, *model.input_shape], tf.float32, name="images")
    group_ids = tf.TensorSpec([None], tf.int32, name="group_ids")
    content = tf.TensorSpec([None, model.content_dim], tf.float32, name="content")
    style = tf.TensorSpec([None, model.style_dim], tf.float32, name="style")

    def encoder(images):
        return dict(model.encode(images))

    def group_encoder(images, group_ids):
        return dict(model.encode_groups(images, group_ids))

    def decoder(content, style):
        return dict(model.decode_params(content, style))

    group_encoding = (group_encoder, [images, group_ids])
    groupings = getattr(model, "groupings", None)  # a MultiLevelVAE: one group-id input per grouping
    if groupings:
        def groupings_encoder(images, *ids):
            return dict(model.encode_groups(images, dict(zip(groupings, ids))))

        group_encoding = (groupings_encoder, [images] + [tf.TensorSpec([None], tf.int32, name=f"group_ids_{name}")
                                                         for name in groupings])
    return {
        "encoder": (encoder, [images]),
        "group_encoder": group_encoding,
        "decoder": (decoder, [content, style]),
    }
