"""mlvae compare --data digits [--out reports/compare] [--epochs N] [--trials T] [--models a.keras,b.keras]

The paper's comparison in one command (Figure 6c; supplement sections 7 and 8): the ML-VAE (product
and mixture of Normals, and with a style option), the i.i.d. VAE, the regularised VAE and SVI,
trained on the same batches of groups for the same epochs (or given as saved models), through the
same classifier protocol. The option row takes the config's own style options (a recommended
config: `--config configs/fashion_mnist_group_variance.yaml`), or the digits' best, the group
variance at 3000, where it sets none; every other model is trained with the paper's objective.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from mlvae_tf.config import DEFAULTS  # noqa: E402
from mlvae_tf.files import atomic_path  # noqa: E402

__all__ = ["MODELS", "PAPER", "models_for", "compare", "main"]

# Each compared model: its name in the report and the config overrides that make it. Every model
# is trained with the paper's objective (`PAPER`) but the option row ("ML-VAE, " and its options).
MODELS = {
    "ML-VAE": ["model.kind=mlvae", "model.aggregation=product"],
    "ML-VAE, mixture": ["model.kind=mlvae", "model.aggregation=mixture", "train.jit_compile=false"],
    "VAE": ["model.kind=vae"],
    "Regularised VAE": ["model.kind=regularised_vae"],
    "SVI": ["model.kind=svi", "train.jit_compile=false"],
}
# The style options' config keys and their names in the report; their defaults are the paper's model.
OPTION_NAMES = {"group_variance_weight": "group variance", "independence_weight": "independence",
                "critic_weight": "critic", "cycle_weight": "reverse cycle", "kl_style_weight": "style KL",
                "kl_content_weight": "content KL", "content_samples": "one content sample per group"}
PAPER = {key: DEFAULTS["model"][key] for key in OPTION_NAMES}
# The option row where the config sets none: the digits' best (README, "Style leakage").
DEFAULT_OPTION = {"group_variance_weight": 3000.0}


def models_for(config):
    """`{name: overrides}` of the compared models on `config`: `MODELS` with the paper's objective,
    and after the mixture the ML-VAE with the config's own style options (`PAPER`'s keys at other
    values; `DEFAULT_OPTION` where it sets none), named by them."""
    own = {key: config["model"][key] for key in PAPER if config["model"][key] != PAPER[key]}
    option = own or DEFAULT_OPTION
    paper = [f"model.{key}={value}" for key, value in PAPER.items()]
    models = {name: paper + overrides for name, overrides in MODELS.items()}
    name = "ML-VAE, " + ", ".join(OPTION_NAMES[key] for key in option)
    rows = list(models.items())
    rows.insert(2, (name, paper + MODELS["ML-VAE"] + [f"model.{key}={value}" for key, value in option.items()]))
    return dict(rows)


def _represent(model):
    def represent(images, group_ids):
        return {name: np.asarray(value) for name, value in model.encode_groups(images, group_ids).items()}

    return represent


def _name(model):
    """A saved model's name in the report."""
    kind = type(model).__name__
    option = ", mixture" if getattr(model, "aggregation", "") == "mixture" else ""
    option += "".join(f", {label}" for key, label in OPTION_NAMES.items()
                      if getattr(model, key, PAPER[key]) != PAPER[key])
    return {"MLVAE": "ML-VAE" + option, "RegularisedVAE": "Regularised VAE"}.get(kind, kind)


def _slug(name):
    return name.lower().replace(", ", "_").replace(" ", "_").replace("-", "")


def _content_kl_per_dimension(model, images):
    """Average KL(q(c | x_i) || N(0, 1)) of each content dimension over `images` (near 0: the
    dimension is at the prior, unused). `[content_dim]`."""
    encoded = model.encode(images)
    mean, log_var = np.asarray(encoded["content_mean"], np.float64), np.asarray(encoded["content_log_var"], np.float64)
    return (0.5 * (np.exp(log_var) + mean**2 - 1.0 - log_var)).mean(0)


def _plot(results, path):
    from mlvae_tf.evaluate import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in ((axes[0], "accuracy", "classifier accuracy"),
                              (axes[1], "cond_entropy_bits", "conditional entropy H(Y | features), bits")):
        for label, protocol, part, style in _lines(results):
            per_k = protocol[f"{part}_{metric}"]
            ks = [int(k) for k in per_k]
            ax.errorbar(ks, [per_k[str(k)]["mean"] for k in ks], yerr=[per_k[str(k)]["std"] for k in ks],
                        marker="o", linestyle=style, label=label, capsize=2)
        if metric == "accuracy":
            ax.axhline(next(iter(results.values()))["protocol"]["chance_accuracy"], color="grey", linestyle=":",
                       label="chance")
        ks = [int(k) for k in next(iter(results.values()))["protocol"]["settings"]["ks"]]
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k, test images accumulated per group")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.suptitle("Figure 6c: content, style and the VAE's latent against the evidence k")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def _lines(results):
    """(label, protocol, part, line style) of each curve of the figure."""
    for name, result in results.items():
        yield f"{name}: content", result["protocol"], "content", "-"
        if name == "ML-VAE":
            yield f"{name}: style", result["protocol"], "style", "--"
        if "whole_latent" in result:
            yield f"{name}: whole latent, accumulated", result["whole_latent"], "content", "-."


def _table(results, K):
    """The comparison as markdown."""
    lines = [f"| Model | content acc. k=1 | content acc. k={K} | style acc. k=1 | H(Y\\|C) k=1, bits | "
             "final train loss | final val. loss | val. -ELBO | training s | test-time inference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        p = result["protocol"]
        cell = lambda metric, k: f"{p[metric][str(k)]['mean']:.3f}"  # noqa: E731
        train = result.get("training", {})
        loss = lambda key: f"{train[key]:.1f}" if key in train else "n/a"  # noqa: E731
        inference = (f"{result['inference']['steps']} Adam steps, {result['inference']['ms_per_image']:.1f} ms/image"
                     if "inference" in result else "one encoder pass")
        lines.append(f"| {name} | {cell('content_accuracy', 1)} | {cell('content_accuracy', K)} | "
                     f"{cell('style_accuracy', 1)} | {cell('content_cond_entropy_bits', 1)} | {loss('loss')} | "
                     f"{loss('val_loss')} | {loss('val_elbo')} | {train.get('seconds', 'n/a')} | {inference} |")
        if "whole_latent" in result:
            w = result["whole_latent"]
            lines.append(f"| {name}, whole latent accumulated (Figure 6c) | {w['content_accuracy']['1']['mean']:.3f} | "
                         f"{w['content_accuracy'][str(K)]['mean']:.3f} | | "
                         f"{w['content_cond_entropy_bits']['1']['mean']:.3f} | | | | | |")
    return "\n".join(lines) + "\n"


def compare(config, out, models=None, trials=None, progress=print):
    """Trains (or takes) every model of `models_for(config)` on `config`'s data and writes the comparison.

    Args:
        config: a validated `mlvae_tf.config` dict: the data, the shared settings (networks, sizes,
            likelihood, epochs, learning rate, seeds) and the protocol (`evaluate`).
        out: the report folder: `compare.md`, `compare.json`, `figure6c.png`, `training.png`,
            `svi_swap_grid.png`, `models/<name>.keras` and `models/config.yaml` (the shared
            config, so that `mlvae evaluate --model <out>/models/<name>.keras` takes its split).
        models: optional list of saved `.keras` paths to compare instead of training.
        trials: the protocol's trials (default: the config's).

    Returns:
        dict `{model name: {"protocol", "training", ...}}`, as `compare.json`.
    """
    import keras

    from mlvae_tf.config import apply_overrides
    from mlvae_tf.data import load_splits
    from mlvae_tf.evaluate import _swap_labels, save_tiles
    from mlvae_tf.evaluation import check_disjoint, compute_protocol, swap_grid, whole_latent
    from mlvae_tf.training import build, negative_elbo

    data, protocol = config["data"], config["evaluate"]
    splits = load_splits(data["name"], data["group_key"], seed=data["seed"], data_dir=data["data_dir"])
    check_disjoint(splits["train"], splits["test"])
    settings = dict(K=protocol["K"], ks=protocol["ks"], trials=trials or protocol["trials"],
                    features=protocol["features"], seed=0, progress=False)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    with open(os.path.join(out, "models", "config.yaml"), "w") as f:  # `mlvae evaluate` takes the split from it
        yaml.safe_dump(config, f, sort_keys=False)
    if models:
        loaded = [keras.models.load_model(path) for path in models]
        candidates = [(_name(model), model, None) for model in loaded]
    else:
        candidates = [(name, None, overrides) for name, overrides in models_for(config).items()]
    results, histories = {}, {}
    for name, model, overrides in candidates:
        result = {}
        if model is None:
            keras.utils.set_random_seed(config["train"]["seed"])
            model, train_ds, val_ds = build(apply_overrides(config, overrides), splits)
            start = time.time()
            epochs = config["train"]["epochs"]
            # SVI's validation runs test-time inference on every validation batch: at the last epoch only.
            history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0,
                                validation_freq=epochs if type(model).__name__ == "SVI" else 1).history
            elbo = negative_elbo({name: values[-1] for name, values in history.items()})  # what all share
            result["training"] = {"epochs": config["train"]["epochs"], "seconds": round(time.time() - start, 1),
                                  "loss": history["loss"][-1], "val_loss": history["val_loss"][-1], "val_elbo": elbo}
            histories[name] = history["loss"]
            model.save(os.path.join(out, "models", f"{_slug(name)}.keras"))
        result["protocol"] = compute_protocol(_represent(model), splits["test"], **settings)
        K = result["protocol"]["settings"]["K"]
        if type(model).__name__ == "VAE":
            result["whole_latent"] = compute_protocol(whole_latent(model), splits["test"], **settings)
        if type(model).__name__ == "SVI":
            images = splits["test"][0][:200]
            start = time.time()
            model.encode_groups(images, np.arange(len(images)) % 20)
            result["inference"] = {"steps": model.inference_steps,
                                   "ms_per_image": 1000 * (time.time() - start) / len(images)}
            labels = splits["test"][1]
            chosen = [np.flatnonzero(labels == c)[0] for c in np.unique(labels)[:8]]
            captions = _swap_labels(len(chosen))
            captions["title"] = "SVI (supplement, Figure 5): " + captions["title"]
            save_tiles(swap_grid(model, splits["test"][0][chosen])[1], os.path.join(out, "svi_swap_grid.png"),
                       **captions)
        if type(model).__name__ in ("VAE", "RegularisedVAE"):
            result["content_kl_per_dimension"] = _content_kl_per_dimension(model, splits["test"][0]).tolist()
        results[name] = result
        p = result["protocol"]
        progress(f"{name}: content accuracy k=1 {p['content_accuracy']['1']['mean']:.3f}, k={K} "
                 f"{p['content_accuracy'][str(K)]['mean']:.3f}; style k=1 {p['style_accuracy']['1']['mean']:.3f}")
    with atomic_path(os.path.join(out, "compare.json")) as tmp, open(tmp, "w") as f:
        json.dump({"data": data, "results": results}, f, indent=2)
    with atomic_path(os.path.join(out, "compare.md")) as tmp, open(tmp, "w") as f:
        f.write(_table(results, K))
    _plot(results, os.path.join(out, "figure6c.png"))
    if histories:
        _plot_training(histories, os.path.join(out, "training.png"))
    return results


def _plot_training(histories, path):
    from mlvae_tf.evaluate import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, losses in histories.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (negative group ELBO per group)")
    ax.set_title("Training objective after the same epochs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def main(argv=None, prog="mlvae compare"):
    from mlvae_tf.errors import OneLineParser, import_tensorflow, positive_int
    from mlvae_tf.config import DATASETS, ConfigError, load_config

    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[2])
    parser.add_argument("--data", default="digits", choices=DATASETS,
                        help="the data set: configs/<data>.yaml where it exists (the shared settings), else the "
                             "default config with data.name=<data>")
    parser.add_argument("--config", default=None, help="a config file instead of --data's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--out", default="reports/compare", help="report folder (default: reports/compare)")
    parser.add_argument("--epochs", type=positive_int, default=None, help="epochs of every model (default: the config's)")
    parser.add_argument("--trials", type=positive_int, default=None, help="the protocol's trials (default: the config's)")
    parser.add_argument("--models", default=None, help="comma-separated saved .keras models to compare instead")
    args = parser.parse_args(argv)
    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f"--config: no such file {args.config!r}")
    import_tensorflow()
    path = args.config or os.path.join("configs", f"{args.data}.yaml")
    overrides = list(args.set) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    if args.config is None and not os.path.isfile(path):
        path, overrides = None, [f"data.name={args.data}", *overrides]
    try:
        config = load_config(path, overrides)
    except (ConfigError, FileNotFoundError) as error:
        parser.error(str(error))
    models = [m for m in (args.models or "").split(",") if m]
    missing = [m for m in models if not os.path.isfile(m)]
    if missing:
        parser.error(f"--models: no such file {missing[0]!r}")
    import mlvae_tf.models  # noqa: F401  (registers the models with Keras)
    from mlvae_tf.data import DataUnavailableError

    try:
        compare(config, args.out, models=models, trials=args.trials)
    except (ValueError, DataUnavailableError) as error:
        parser.exit(1, f"{prog}: error: {error}\n")
    print(f"Outputs in {args.out}/: compare.md, compare.json, figure6c.png"
          + ("" if models else ", training.png, models/") + (", svi_swap_grid.png" if not models else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
