"""`make demo`: train the ML-VAE on the bundled 8x8 digits grouped by label, and say what it did.

python -m mlvae_tf.demo [--epochs 120] [--out runs/demo] [--seed 0]

The settings are `configs/digits.yaml`'s (`mlvae_tf.config.DEFAULTS`), so `mlvae train` with the
default config trains the same model.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.config import DEFAULTS, apply_overrides  # noqa: E402
from mlvae_tf.errors import positive_int  # noqa: E402
from mlvae_tf.evaluation import linear_probe_accuracy  # noqa: E402
from mlvae_tf.training import build  # noqa: E402

__all__ = ["main"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS["train"]["epochs"])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export", default="savedmodels", help="where to export the demo model ('' to skip)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    splits = mlvae_tf.data.digits_splits(seed=args.seed)
    sizes = {name: len(labels) for name, (_, labels) in splits.items()}
    print(f"Data: scikit-learn's 8x8 digits, {sum(sizes.values())} images grouped by label (10 groups); "
          f"{sizes['train']} train / {sizes['val']} validation / {sizes['test']} test images.")
    config = apply_overrides(DEFAULTS, [f"data.seed={args.seed}", f"train.seed={args.seed}"])
    data, settings = config["data"], config["model"]
    model, train, val = build(config, splits)
    print(f"Model: ML-VAE, mlp {settings['hidden_units']} tanh, content {settings['content_dim']}, style "
          f"{settings['style_dim']}, {settings['likelihood']} likelihood, {settings['aggregation']} of Normals; "
          f"{args.epochs} epochs on batches of {data['groups_per_batch']} groups of <= "
          f"{data['max_group_size']} images (Adam {config['train']['learning_rate']}).")
    start = time.time()
    history = model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    seconds = time.time() - start

    model_path = os.path.join(args.out, "model.keras")
    model.save(model_path)
    with open(os.path.join(args.out, "config.yaml"), "w") as f:  # `mlvae evaluate` takes the split from it
        yaml.safe_dump(dict(config, train=dict(config["train"], epochs=args.epochs)), f, sort_keys=False)
    summary = {
        "epochs": args.epochs,
        "train_seconds": round(seconds, 1),
        "val_loss_first_epoch": history.history["val_loss"][0],
        "val_loss_last_epoch": history.history["val_loss"][-1],
        "content_probe_accuracy": linear_probe_accuracy(model, splits["train"], splits["test"], "content_mean"),
        "style_probe_accuracy": linear_probe_accuracy(model, splits["train"], splits["test"], "style_mean"),
        "chance_accuracy": 0.1,
        "model": model_path,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"\nTrained in {seconds:.0f} s: validation loss per group {summary['val_loss_first_epoch']:.1f} after "
          f"epoch 1 -> {summary['val_loss_last_epoch']:.1f} after epoch {args.epochs}.")
    print(f"Linear probe on single test images (chance 0.10): content means {summary['content_probe_accuracy']:.3f}, "
          f"style means {summary['style_probe_accuracy']:.3f}.")
    print(f"Outputs: {model_path} (load with keras.models.load_model), {os.path.join(args.out, 'summary.json')}.")
    from mlvae_tf.evaluate import evaluate

    report = os.path.join(args.out, "report")
    protocol = config["evaluate"]
    print(f"\nThe paper's protocol (supplement 3.1): K={protocol['K']} test images per class in each of the "
          f"classifier's sets, {protocol['features']} features, {protocol['trials']} trials:")
    metrics = evaluate(model, splits["train"], splits["test"], report, seed=args.seed, **config["evaluate"])
    for name in ("content_accuracy", "style_accuracy", "content_cond_entropy_bits"):
        print(f"  {name:26s} " + ", ".join(f"k={k}: {v['mean']:.3f}" for k, v in metrics[name].items()))
    print(f"  chance accuracy {metrics['chance_accuracy']:.2f}; grids, plot and metrics.json in {report}/")
    if args.export:
        _export_and_compare(model_path, args.export, splits["test"][0][:1])
    return summary


def _export_and_compare(model_path, out, image):
    """Exports the demo model (version 1, replaced if present) and prints one ONNX Runtime
    prediction next to the Keras one."""
    import onnxruntime

    from export import export_model

    model = keras.models.load_model(model_path)
    export_model(model, out, "digits", overwrite=True)
    root = os.path.join(out, "digits")
    session = onnxruntime.InferenceSession(os.path.join(root, "onnx", "encoder.onnx"))
    onnx_mean = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": image})))
    keras_mean = model.encode(image)["content_mean"].numpy()
    np.set_printoptions(precision=4, suppress=True)
    print(f"\nExported to {root}/ (encoder/1, decoder/1: SavedModels for TF Serving; onnx/*.onnx; manifest.json).")
    print(f"content_mean of one test image, Keras:        {keras_mean[0]}")
    print(f"content_mean of one test image, ONNX Runtime: {onnx_mean['content_mean'][0]}")
    print(f"largest difference: {np.abs(keras_mean - onnx_mean['content_mean']).max():.2e}")


if __name__ == "__main__":
    main()
