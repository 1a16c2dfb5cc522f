"""TF Serving's request handling, reproduced for a loaded SavedModel signature.

The `tensorflow_model_server` binary is not pip-installable; these functions decode a REST
predict body (row `{"instances": ...}` or columnar `{"inputs": ...}` form) or a gRPC
`PredictRequest` the way the server does, call the signature, and encode the answer the same
way. They need TensorFlow (and `tensorflow-serving-api` for gRPC), not `mlvae_tf`.
"""

import numpy as np
import tensorflow as tf

__all__ = ["rest_predict", "grpc_predict"]


def _input_specs(signature):
    return signature.structured_input_signature[1]  # {name: TensorSpec}


def _call(signature, inputs):
    specs = _input_specs(signature)
    missing = set(specs) - set(inputs)
    if missing:
        raise ValueError(f"missing inputs {sorted(missing)}; the signature takes {sorted(specs)}")
    tensors = {name: tf.constant(np.asarray(value), dtype=specs[name].dtype) for name, value in inputs.items()}
    return {name: value.numpy() for name, value in signature(**tensors).items()}


def rest_predict(signature, body):
    """Answers a REST `:predict` body (a dict parsed from JSON) with `signature`.

    Row form: `{"instances": [...]}`, one entry per example (a value when the signature has one
    input, else a dict of named inputs); answered as `{"predictions": [...]}`, one entry per
    example. Columnar form: `{"inputs": {...}}` (or a value for one input); answered as
    `{"outputs": {...}}` (or a value for one output).
    """
    specs = _input_specs(signature)
    if "instances" in body:
        instances = body["instances"]
        if len(specs) == 1 and not isinstance(instances[0], dict):
            inputs = {next(iter(specs)): instances}
        else:
            inputs = {name: [instance[name] for instance in instances] for name in specs}
        outputs = _call(signature, inputs)
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        lengths = {len(value) for value in outputs.values()}
        if lengths != {len(instances)}:
            raise ValueError("row format needs every output to have one row per instance; use the columnar form")
        return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()}
                                for i in range(len(instances))]}
    if "inputs" in body:
        inputs = body["inputs"] if isinstance(body["inputs"], dict) else {next(iter(specs)): body["inputs"]}
        outputs = _call(signature, inputs)
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}
    raise ValueError('a predict body needs "instances" (row form) or "inputs" (columnar form)')


def grpc_predict(signatures, request):
    """Answers a `tensorflow_serving.apis.predict_pb2.PredictRequest` with the named signature
    from `signatures` (a loaded SavedModel's `.signatures`), as a `PredictResponse`."""
    from tensorflow_serving.apis import predict_pb2

    name = request.model_spec.signature_name or "serving_default"
    inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for key, value in _call(signatures[name], inputs).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return response
