"""python -m export --model m.keras --out savedmodels --name digits [--version 1]
[--formats savedmodel,onnx] [--overwrite]"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None, prog="python -m export"):
    from mlvae_tf.errors import OneLineParser, load_model

    parser = OneLineParser(prog=prog, description="Export a trained ML-VAE.")
    parser.add_argument("--model", required=True, help="path of the saved .keras model")
    parser.add_argument("--out", default="savedmodels", help="base folder (default: savedmodels)")
    parser.add_argument("--name", required=True, help="model name: files go to OUT/NAME/")
    parser.add_argument("--version", type=int, default=1, help="SavedModel version folder (default: 1)")
    parser.add_argument("--formats", default="savedmodel,onnx", help="comma-separated: savedmodel,onnx")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing version")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error(f"--model: no such file {args.model!r}")

    model = load_model(args.model, parser)  # imports TensorFlow quietly, before the exporter's Keras
    from export.exporter import ExportError, export_model

    try:
        manifest = export_model(model, args.out, args.name, version=args.version,
                                formats=[f.strip() for f in args.formats.split(",") if f.strip()],
                                overwrite=args.overwrite, progress=True)
    except ExportError as error:
        parser.exit(1, f"{prog}: error: {error}\n")
    root = os.path.join(args.out, args.name)
    print(f"Exported {args.model} to {root}/: " + ", ".join(sorted(manifest["files"])) + ", manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
