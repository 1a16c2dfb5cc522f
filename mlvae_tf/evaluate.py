"""python -m mlvae_tf.evaluate --model runs/digits/<run>/model.keras [--out reports/digits] [--K 6] [--ks 1,2,3,6]

The paper's protocol on a trained model, on the test split of the model's own run (its
`config.yaml`): swap grids with and without accumulated evidence, the classifier accuracy and
conditional entropy of content and style against k (supplement 3.1), `metrics.json` and a plot.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from mlvae_tf.files import atomic_path  # noqa: E402

__all__ = ["evaluate", "evaluate_groupings", "factor_heat_map", "factor_table", "main", "save_tiles"]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no screen needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(metrics, path):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric, title in ((axes[0], "accuracy", "classifier accuracy"),
                              (axes[1], "cond_entropy_bits", "conditional entropy (bits)")):
        for part in ("content", "style"):
            per_k = metrics[f"{part}_{metric}"]
            ks = [int(k) for k in per_k]
            ax.errorbar(ks, [per_k[str(k)]["mean"] for k in ks], yerr=[per_k[str(k)]["std"] for k in ks],
                        marker="o", label=part)
        if metric == "accuracy":
            ax.axhline(metrics["chance_accuracy"], color="grey", linestyle=":", label="chance")
        ax.set_xlabel("k (test images accumulated per group)")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def save_tiles(tiles, path, title, rows=None, columns=None, gap=4):
    """Saves a grid's tiles as a picture people can read: every tile upscaled (nearest
    neighbour) to at least 64 pixels, white gaps between tiles, a title, and a label per row and
    per column (None: no labels).

    Args:
        tiles: rows of `[H, W, C]` images in [0, 1] (None: a blank), as the grids return them.
        path: the PNG to write.
        title: what the picture shows and how to read it.
        rows, columns: one label per row / column of tiles.
    """
    from mlvae_tf.evaluation import readable_scale, tile

    plt = _pyplot()
    scale = readable_scale(tiles)
    image = np.clip(tile(tiles, scale, gap), 0.0, 1.0)
    height, width = image.shape[:2]
    cell_height, cell_width = (height + gap) / len(tiles), (width + gap) / len(tiles[0])
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0.0, vmax=1.0,
              interpolation="nearest")
    ax.set_xticks([(j + 0.5) * cell_width - gap / 2 for j in range(len(tiles[0]))] if columns else [])
    ax.set_xticklabels(columns or [], fontsize=8, rotation=30 if columns and len(tiles[0]) > 6 else 0)
    ax.xaxis.tick_top()
    ax.set_yticks([(i + 0.5) * cell_height - gap / 2 for i in range(len(tiles))] if rows else [])
    ax.set_yticklabels(rows or [], fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9, pad=24 if columns else 6, loc="left")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def _swap_labels(n, evidence=0):
    source = f"over 1 + {evidence} images" if evidence else "over the image alone"
    return dict(title=f"Swapping (paper, Figure 4): tile (row i, column j) decodes image j's content ({source}) "
                      "with image i's style.\nWhere content and style are separated, the class follows the column and "
                      "the style (slant, stroke, shade) the row.",
                rows=["content images", "reconstructions"] + [f"style of {i + 1}" for i in range(n)],
                columns=["style images", "reconstr."] + [f"content of {j + 1}" for j in range(n)])


def evaluate(model, train, test, out, K=None, ks=(1, 2, 5, 10), trials=5, features="sample", seed=0, evidence=10,
             columns=8, unseen_groups=False, provenance=None):
    """Writes `swap_grid.png`, `swap_grid_evidence.png` (Figure 4), `interpolation.png`,
    `generation.png` (Figure 5), `evidence.png` (Figure 6a), `protocol.png` and `metrics.json` in `out`.

    Args:
        model: a trained model (`encode`, `encode_groups`, `decode`).
        train: `(images, labels)` the model was trained on: evaluation refuses test images among
            them (and, with `unseen_groups`, test groups among its groups); the leakage check's
            pixel classifier is fitted on up to 5,000 of them.
        test: `(images, labels)` of the evaluation; the protocol uses these only.
        K, ks, trials, features, seed: the protocol's settings (`mlvae_tf.evaluation.compute_protocol`).
        provenance: optional dict (model file, data split) added to `metrics["settings"]`.

    Returns:
        The metrics dict (see `mlvae_tf.evaluation.compute_protocol`), with `leakage` (see
        `mlvae_tf.evaluation.compute_leakage`).
    """
    from mlvae_tf.evaluation import (
        check_disjoint,
        compute_leakage,
        compute_protocol,
        evidence_grid,
        generation_grid,
        interpolation_grid,
        swap_grid,
    )

    if os.path.exists(os.fspath(out)) and not os.path.isdir(os.fspath(out)):
        raise ValueError(f"`out` must be a folder, got the file {os.fspath(out)!r}.")
    check_disjoint(train, test, unseen_groups=unseen_groups)

    def represent(images, group_ids):
        return {name: np.asarray(value) for name, value in model.encode_groups(images, group_ids).items()}

    metrics = compute_protocol(represent, test, K=K, ks=ks, trials=trials, features=features, seed=seed)
    metrics["settings"].update(provenance or {})
    os.makedirs(out, exist_ok=True)  # only once the settings have proved possible
    x, labels = test
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == label)) for label in np.unique(labels)[:columns]]
    others = [rng.permutation(np.setdiff1d(np.flatnonzero(labels == labels[i]), [i]))[:evidence] for i in chosen]
    n = len(chosen)
    save_tiles(swap_grid(model, x[chosen])[1], os.path.join(out, "swap_grid.png"), **_swap_labels(n))
    save_tiles(swap_grid(model, x[chosen], [x[o] for o in others])[1], os.path.join(out, "swap_grid_evidence.png"),
               **_swap_labels(n, min(len(o) for o in others)))
    steps = 7
    fractions = [f"{a:.2f}" for a in np.linspace(0.0, 1.0, steps)]
    save_tiles(interpolation_grid(model, x[chosen[0]], x[chosen[1]], steps=steps,
                                  evidence=(x[others[0]], x[others[1]]))[1],
               os.path.join(out, "interpolation.png"),
               "Interpolation (paper, Figure 5b): columns move the content from image 1's group to image 2's, "
               "rows move the style from image 1's to image 2's",
               rows=[f"style {a}" for a in fractions], columns=[f"content {a}" for a in fractions])
    group = x[np.concatenate([[chosen[0]], others[0]])]
    generated = generation_grid(model, group, seed=seed)[1]
    save_tiles(generated, os.path.join(out, "generation.png"),
               "Generation (paper, Figure 5a): the group's accumulated content with styles drawn from the prior",
               rows=["the group's images", "prior styles"])
    save_tiles(evidence_grid(model, group[:4])[1], os.path.join(out, "evidence.png"),
               "Accumulating evidence (paper, Figure 6a): each image's reconstruction from its own content and "
               "from the group's",
               rows=[f"image {i + 1}" for i in range(4)], columns=["image", "content alone", "group's content"])

    judge = np.random.default_rng(seed).permutation(len(train[1]))[:5000]
    metrics["leakage"] = compute_leakage(model, (train[0][judge], train[1][judge]), test,
                                         metrics["style_accuracy"][str(min(ks))]["mean"], metrics["chance_accuracy"],
                                         seed=seed)
    with atomic_path(os.path.join(out, "metrics.json")) as tmp, open(tmp, "w") as f:
        json.dump(metrics, f, indent=2)
    _plot(metrics, os.path.join(out, "protocol.png"))
    return metrics


def factor_heat_map(result, path, title="Which factor each latent holds (linear probe)"):
    """The latent x factor matrix of `latent_factor_accuracy` as a heat map (chance under each factor)."""
    plt = _pyplot()
    accuracy = result["accuracy"]
    factors = list(result["chance"])
    matrix = np.array([[accuracy[latent][factor] for factor in factors] for latent in accuracy])
    fig, ax = plt.subplots(figsize=(1.3 * len(factors) + 1.7, 0.7 * len(accuracy) + 1.1))
    ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(factors)), [f"{f}\n(chance {result['chance'][f]:.2f})" for f in factors], fontsize=8)
    ax.set_yticks(range(len(accuracy)), [f"{latent} latent" for latent in accuracy])
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def evaluate_groupings(model, train, test, out, ks=(1, 10), probes=("linear", "mlp"), size=2000, columns=6, seed=0,
                       provenance=None):
    """The evaluation per latent of a `MultiLevelVAE`: which factor each latent holds, and grids
    that swap one latent. Writes `factors_<probe>.png` (each probe's matrix at the largest k),
    `swap_<latent>.png` per latent and `metrics.json` in `out`.

    Args:
        model: a trained `MultiLevelVAE`.
        train, test: `(images, {factor: int labels [N]})`: every ground-truth factor to probe
            (the groupings among them). The probes are fitted on `size` training images and
            scored on up to `size` test images.
        ks: images of evidence per content reading (`latent_factor_accuracy`'s `k`).
        probes: `latent_factor_accuracy`'s probes to read the latents with ("linear", "mlp").
        columns: images in the swap grids, of distinct values of the first grouping.
        provenance: optional dict (model file, data split) added to `metrics["settings"]`.

    Returns:
        dict `{"accuracy": {probe: {k: {latent: {factor: accuracy}}}}, "chance": {factor: rate},
        "settings": ...}`, `k` a string as in `metrics.json`.
    """
    from mlvae_tf.evaluation import latent_factor_accuracy, latent_swap_grid

    if os.path.exists(os.fspath(out)) and not os.path.isdir(os.fspath(out)):
        raise ValueError(f"`out` must be a folder, got the file {os.fspath(out)!r}.")
    missing = [name for name in model.groupings if name not in test[1]]
    if missing:
        raise ValueError(f"`test`: the factors {sorted(test[1])} lack the model's groupings {missing}.")
    parts = [(x[:size], {factor: labels[:size] for factor, labels in factors.items()}) for x, factors in (train, test)]
    results = {probe: {str(k): latent_factor_accuracy(model, *parts, k=k, seed=seed, probe=probe) for k in ks}
               for probe in probes}
    metrics = {"accuracy": {probe: {k: result["accuracy"] for k, result in per_k.items()}
                            for probe, per_k in results.items()},
               "chance": results[probes[0]][str(ks[0])]["chance"],
               "settings": {"ks": list(ks), "probes": list(probes), "probe_train": len(parts[0][0]),
                            "probe_test": len(parts[1][0]), "seed": seed, **(provenance or {})}}
    os.makedirs(out, exist_ok=True)
    largest = str(max(ks))
    for probe, per_k in results.items():
        factor_heat_map(per_k[largest], os.path.join(out, f"factors_{probe}.png"),
                        f"Which factor each latent holds ({probe} probe; contents accumulated over {largest} images)")
    first = test[1][model.groupings[0]]
    picked = [int(np.flatnonzero(first == value)[0]) for value in np.unique(first)[:columns]]
    for latent in model.groupings + ("style",):
        save_tiles(latent_swap_grid(model, test[0][picked], latent), os.path.join(out, f"swap_{latent}.png"),
                   f"Row i, column j: image i with the {latent} latent of image j (all else kept)")
    with atomic_path(os.path.join(out, "metrics.json")) as tmp, open(tmp, "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def factor_table(accuracy, chance):
    """A latent x factor matrix per k (`{k: {latent: {factor: accuracy}}}`) as markdown rows: one
    per latent and k (the style once: it reads one image), then `chance` (`{factor: rate}`)."""
    ks = list(accuracy)
    factors = list(chance)
    lines = ["| latent | k | " + " | ".join(factors) + " |", "|---|---|" + "---|" * len(factors)]
    for latent in accuracy[ks[0]]:
        for k in ks if latent != "style" else ks[:1]:
            row = accuracy[k][latent]
            lines.append(f"| {latent} | {k} | " + " | ".join(f"{row[f]:.2f}" for f in factors) + " |")
    lines.append("| chance | | " + " | ".join(f"{chance[f]:.2f}" for f in factors) + " |")
    return "\n".join(lines)


def run_config(model_path, config_path=None):
    """The validated config of the run that wrote `model_path`: `config_path`, or the run
    folder's `config.yaml` (next to `model.keras` and `best.keras`, one level above
    `checkpoints/`). Returns `(config, path)`, or `(None, None)` when there is none."""
    from mlvae_tf.config import load_config

    if config_path is None:
        folder = os.path.dirname(os.path.abspath(model_path))
        candidates = [os.path.join(folder, "config.yaml"), os.path.join(os.path.dirname(folder), "config.yaml")]
        config_path = next((path for path in candidates if os.path.isfile(path)), None)
        if config_path is None:
            return None, None
    return load_config(config_path), config_path


def main(argv=None, prog="python -m mlvae_tf.evaluate"):
    from mlvae_tf.errors import OneLineParser, import_tensorflow, load_model, positive_int
    from mlvae_tf.config import DATASETS, ConfigError
    from mlvae_tf.evaluation.protocol import FEATURES

    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[2])
    parser.add_argument("--model", required=True, help="saved .keras model")
    parser.add_argument("--config", default=None,
                        help="the run's config.yaml (default: the one in the model's run folder); its `data` "
                             "section gives the split and its `evaluate` section the protocol's settings")
    parser.add_argument("--data", default=None, choices=DATASETS,
                        help="data set, for a model without a run folder (with --data-seed)")
    parser.add_argument("--data-seed", type=int, default=None, help="seed of the data split the model was trained on")
    parser.add_argument("--group-key", default=None, help="the label that defines the groups")
    parser.add_argument("--unseen-groups", action="store_true",
                        help="the test groups must be unseen in training (as MS-Celeb-1M identities): refuse otherwise")
    parser.add_argument("--out", default=None, help="output folder (default: reports/<the run's name>)")
    parser.add_argument("--K", type=positive_int, default=None, help="images per class in each classifier set (default: "
                                                            "the config's, else the largest the test classes allow, "
                                                            "at most 100)")
    parser.add_argument("--ks", default=None, help="comma-separated evidence sizes k (default: the config's)")
    parser.add_argument("--trials", type=positive_int, default=None, help="trials on different test images (default: 5)")
    parser.add_argument("--features", default=None, choices=FEATURES, help="posterior samples (eq. 4, default) or means")
    parser.add_argument("--seed", type=int, default=0, help="seed of the trials (not of the data split)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error(f"--model: no such file {args.model!r}")
    if args.config is not None and not os.path.isfile(args.config):
        parser.error(f"--config: no such file {args.config!r}")
    if args.out is not None and os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out must be a folder, got the file {args.out!r}")
    import_tensorflow()
    try:
        config, config_path = run_config(args.model, args.config)
    except ConfigError as error:
        parser.error(f"--config: {error}")
    if config is None:
        if args.data is None:
            parser.error("no config.yaml in the model's run folder: pass --config (the run's config.yaml), or "
                         "--data and --data-seed as the model was trained")
        settings = {"name": args.data, "group_key": args.group_key or "label",
                    "seed": 0 if args.data_seed is None else args.data_seed}
        protocol, name = {}, args.data
    else:
        settings, protocol, name = dict(config["data"]), dict(config["evaluate"]), config["name"]
        asked = {("--data", "name"): args.data, ("--group-key", "group_key"): args.group_key,
                 ("--data-seed", "seed"): args.data_seed}
        differs = [(flag, key) for (flag, key), value in asked.items() if value is not None and value != settings[key]]
        if differs:
            parser.error(f"{', '.join(flag for flag, _ in differs)} differ from the run's config {config_path} ("
                         f"{', '.join(f'data.{key}={settings[key]!r}' for _, key in differs)}); the evaluation takes "
                         "the run's own split")
    try:
        ks = [int(k) for k in args.ks.split(",")] if args.ks else protocol.get("ks")
    except ValueError:
        parser.error(f"--ks must be comma-separated integers, got {args.ks!r}")
    K = args.K if args.K is not None else protocol.get("K")
    trials = args.trials if args.trials is not None else protocol.get("trials", 5)
    features = args.features or protocol.get("features", "sample")

    import mlvae_tf

    out = args.out or os.path.join("reports", name)
    model = load_model(args.model, parser)
    groupings = getattr(model, "groupings", None)
    group_key = settings["group_key"]
    if groupings:  # every ground-truth factor the data records, to read each latent against
        from mlvae_tf.data.grouped_shapes import FACTORS

        group_key = list(FACTORS) if settings["name"].startswith("grouped_shapes") else list(groupings)
    try:
        splits = mlvae_tf.data.load_splits(settings["name"], group_key, seed=settings["seed"],
                                           data_dir=settings.get("data_dir"))
    except (mlvae_tf.data.DataUnavailableError, ValueError) as error:
        parser.exit(1, f"{prog}: error: {error}\n")
    if tuple(splits["test"][0].shape[1:]) != tuple(model.input_shape):
        parser.exit(1, f"{prog}: error: the model takes images of shape {tuple(model.input_shape)}, but data "
                       f"{settings['name']!r} has {tuple(splits['test'][0].shape[1:])}: pass the data set it was "
                       "trained on (--data)\n")
    if groupings:
        return _evaluate_groupings(model, splits, out, ks or [1, 10], args, settings, config_path, prog)
    if ks is None:  # neither --ks nor a config: 1, 2, 5, 10 where the test classes allow, and K
        largest = K or mlvae_tf.evaluation.largest_K(splits["test"][1])
        ks = sorted({k for k in (1, 2, 5, 10) if k <= largest} | {largest})
    try:
        metrics = evaluate(model, splits["train"], splits["test"], out, K=K, ks=ks, trials=trials,
                           features=features, seed=args.seed, unseen_groups=args.unseen_groups,
                           provenance={"data": dict(settings, config=config_path),
                                       "model": os.path.abspath(args.model)})
    except ValueError as error:
        parser.exit(1, f"{prog}: error: {error}\n")
    line = lambda name: ", ".join(f"k={k}: {v['mean']:.3f}" for k, v in metrics[name].items())  # noqa: E731
    chosen = metrics["settings"]
    print(f"protocol: K={chosen['K']} test images per class and set, {chosen['features']} features, "
          f"{chosen['trials']} trials, data {settings['name']} (seed {settings['seed']})")
    print(f"content accuracy   {line('content_accuracy')}")
    print(f"style accuracy     {line('style_accuracy')}   (chance {metrics['chance_accuracy']:.2f})")
    print(f"content H(Y|C) bits {line('content_cond_entropy_bits')}")
    leakage = metrics["leakage"]
    print(f"swaps decoded as the content's class {leakage['swap_follows_content']:.2f}, as the style's "
          f"{leakage['swap_follows_style']:.2f}; style accuracy above chance {leakage['style_accuracy_above_chance']:.2f}")
    for warning in leakage["warnings"]:
        print(f"warning: {warning}")
    print(f"Outputs in {out}/: swap_grid.png, swap_grid_evidence.png, interpolation.png, generation.png, "
          "evidence.png, protocol.png, metrics.json")
    return 0


def _evaluate_groupings(model, splits, out, ks, args, settings, config_path, prog):
    """`main` for a `MultiLevelVAE`: the latent x factor matrices, printed and written."""
    try:
        metrics = evaluate_groupings(model, splits["train"], splits["test"], out, ks=ks, seed=args.seed,
                                     provenance={"data": dict(settings, config=config_path),
                                                 "model": os.path.abspath(args.model)})
    except ValueError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    chosen = metrics["settings"]
    print(f"latent x factor accuracy: a probe from each latent's posterior means, fitted on {chosen['probe_train']} "
          f"training images, scored on {chosen['probe_test']} test images of data {settings['name']} (seed "
          f"{settings['seed']}); contents accumulated over k images sharing the factor")
    for probe, name in (("linear", "logistic regression"), ("mlp", "MLP, 2 x 128 units")):
        print(f"\n{probe} probe ({name}):\n" + factor_table(metrics["accuracy"][probe], metrics["chance"]))
    print(f"Outputs in {out}/: factors_linear.png, factors_mlp.png, "
          + ", ".join(f"swap_{latent}.png" for latent in model.groupings) + ", swap_style.png, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
