"""The `mlvae` command: argument parsing only; the work is in `training`, `evaluate` and `export`.

mlvae train --config configs/digits.yaml [--set model.content_dim=16 ...] [--runs-dir runs] [--fresh]
mlvae evaluate --model M.keras [--data digits] [--out reports/digits] ...
mlvae export --model M.keras --name digits [--out savedmodels] ...
mlvae info --model M.keras
mlvae compare --data digits [--out reports/compare] [--epochs N] [--models a.keras,b.keras]
"""

import csv
import json
import os
import sys

from mlvae_tf.errors import OneLineParser, import_tensorflow, load_model

__all__ = ["main"]


def _train(args):
    from mlvae_tf.config import ConfigError, load_config

    if args.config is not None and not os.path.isfile(args.config):
        return f"mlvae train: error: --config: no such file {args.config!r}"
    if os.path.exists(args.runs_dir) and not os.path.isdir(args.runs_dir):
        return f"mlvae train: error: --runs-dir must be a folder, got the file {args.runs_dir!r}"
    import_tensorflow()  # the config's checks use the models' choices
    try:
        config = load_config(args.config, args.set)
    except ConfigError as error:
        return f"mlvae train: error: {error}"
    from mlvae_tf.data import DataUnavailableError
    from mlvae_tf.training import DivergedError, ResumeError, negative_elbo, train

    try:
        run_dir, _ = train(config, runs_dir=args.runs_dir, fresh=args.fresh)
    except (ResumeError, DataUnavailableError, DivergedError, ConfigError) as error:
        return f"mlvae train: error: {error}"
    except KeyboardInterrupt:
        done = _history(_current_run(args.runs_dir, config["name"]))
        print(f"\nInterrupted after epoch {len(done)}; run the same command to resume.")
        return 130
    history = _history(run_dir)
    final = f"final val_loss {float(history[-1]['val_loss']):.2f}"
    elbo = negative_elbo(history[-1])
    if elbo is not None:  # the loss adds the options' terms and weighs the KLs; this is the model's fit
        final += f" (negative ELBO per group {elbo:.2f})"
    print(f"Done: {len(history)} epochs, {final}; outputs in "
          f"{run_dir}/ (model.keras, best.keras, checkpoints/, history.csv, logs/ for TensorBoard, config.yaml)")
    return 0


def _history(run_dir):
    """The rows of a run's `history.csv` (the whole run, resumed parts included)."""
    if run_dir is None or not os.path.exists(os.path.join(run_dir, "history.csv")):
        return []
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def _current_run(runs_dir, name):
    """The run folder of `name` that an interrupted command was writing to (its backup names it)."""
    marker = os.path.join(runs_dir, name, ".backup", "run_dir")
    if os.path.exists(marker):
        with open(marker) as f:
            return f.read().strip()
    return None


def _info(args, parser):
    if os.path.isdir(args.model):  # an export's folder: is it intact?
        from export.verify import verify_export

        report = verify_export(args.model)
        print(json.dumps(report, indent=2))
        return 0 if report["intact"] else 1
    model = load_model(args.model, parser)
    config = {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}
    print(json.dumps({"model": args.model, "content_dim": model.content_dim, "style_dim": model.style_dim,
                      "parameters": int(model.count_params()), "config": config}, indent=2))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineParser(prog="mlvae", description="Train, evaluate, export and inspect ML-VAE models.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    train = commands.add_parser("train", help="train from a config file")
    train.add_argument("--config", default=None, help="YAML config (default: the built-in digits config)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    train.add_argument("--runs-dir", default="runs")
    train.add_argument("--fresh", action="store_true",
                       help="start a new run even if an interrupted run of this name exists (it is kept)")
    for name, text in (("evaluate", "the paper's protocol on a saved model"), ("export", "SavedModel and ONNX")):
        commands.add_parser(name, help=text, add_help=False)
    info = commands.add_parser("info", help="print a saved model's config and latent sizes, or check an export "
                                            "folder against its manifest's SHA-256")
    info.add_argument("--model", required=True, help="a .keras file, or an export folder (savedmodels/NAME)")
    commands.add_parser("compare", help="the ML-VAE beside its baselines (VAE, regularised VAE, SVI), Figure 6c",
                        add_help=False)

    if argv and argv[0] == "evaluate":
        from mlvae_tf.evaluate import main as evaluate

        return evaluate(argv[1:], prog="mlvae evaluate")
    if argv and argv[0] == "compare":
        from mlvae_tf.compare import main as compare

        try:
            return compare(argv[1:], prog="mlvae compare")
        except KeyboardInterrupt:
            print("\nInterrupted; the models trained so far are in the report's models/ folder. Run the command "
                  "again to start over.")
            return 130
    if argv and argv[0] == "export":
        from export.__main__ import main as export

        return export(argv[1:], prog="mlvae export")
    args = parser.parse_args(argv)
    if args.command == "info":
        return _info(args, commands.choices["info"])
    return _train(args)


if __name__ == "__main__":
    sys.exit(main())
