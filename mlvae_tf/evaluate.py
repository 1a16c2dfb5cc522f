"""python -m mlvae_tf.evaluate --model m.keras --data digits --out reports/digits [--ks 1,2,5,10] [--trials 5]

The paper's protocol on a trained model: swap grids with and without accumulated evidence, the
classifier accuracy and conditional entropy of content and style against k, `metrics.json` and a plot.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

__all__ = ["evaluate", "main"]


def _subsample(part, limit, seed):
    """At most `limit` images of `part`, drawn at random (the classifier's training set)."""
    x, labels = part
    if len(labels) <= limit:
        return part
    keep = np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))
    return x[keep], labels[keep]


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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save_image(grid, path):
    image = grid[..., 0] if grid.shape[-1] == 1 else grid
    _pyplot().imsave(path, np.clip(image, 0.0, 1.0), cmap="gray" if image.ndim == 2 else None)


def evaluate(model, train, test, out, ks=(1, 2, 5, 10), trials=5, seed=0, evidence=10, columns=8,
             max_train_images=5000):
    """Writes `swap_grid.png`, `swap_grid_evidence.png` (Figure 4), `interpolation.png`,
    `generation.png` (Figure 5), `evidence.png` (Figure 6a), `protocol.png` and `metrics.json` in `out`.

    Returns:
        The metrics dict (see `mlvae_tf.evaluation.compute_protocol`), with `leakage` (see
        `mlvae_tf.evaluation.compute_leakage`).
    """
    from mlvae_tf.evaluation import (
        compute_leakage,
        compute_protocol,
        evidence_grid,
        generation_grid,
        interpolation_grid,
        swap_grid,
    )

    os.makedirs(out, exist_ok=True)
    x, labels = test
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == label)) for label in np.unique(labels)[:columns]]
    others = [rng.permutation(np.setdiff1d(np.flatnonzero(labels == labels[i]), [i]))[:evidence] for i in chosen]
    _save_image(swap_grid(model, x[chosen])[0], os.path.join(out, "swap_grid.png"))
    _save_image(swap_grid(model, x[chosen], [x[o] for o in others])[0], os.path.join(out, "swap_grid_evidence.png"))
    _save_image(interpolation_grid(model, x[chosen[0]], x[chosen[1]])[0], os.path.join(out, "interpolation.png"))
    group = x[np.concatenate([[chosen[0]], others[0]])]
    _save_image(generation_grid(model, group, seed=seed)[0], os.path.join(out, "generation.png"))
    _save_image(evidence_grid(model, group[:4])[0], os.path.join(out, "evidence.png"))

    def represent(images, group_ids):
        return {name: np.asarray(value) for name, value in model.encode_groups(images, group_ids).items()}

    train = _subsample(train, max_train_images, seed)
    metrics = compute_protocol(represent, train, test, ks=ks, trials=trials, seed=seed)
    metrics["leakage"] = compute_leakage(model, train, test, metrics["style_accuracy"][str(min(ks))]["mean"],
                                         metrics["chance_accuracy"], seed=seed)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    _plot(metrics, os.path.join(out, "protocol.png"))
    return metrics


def main(argv=None, prog="python -m mlvae_tf.evaluate"):
    from mlvae_tf.cli import OneLineParser
    from mlvae_tf.config import DATASETS

    parser = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="saved .keras model")
    parser.add_argument("--data", default="digits", choices=DATASETS, help="data set, split as in training")
    parser.add_argument("--group-key", default="label", help="the label that defines the groups")
    parser.add_argument("--max-train-images", type=int, default=5000, help="classifier training images at most")
    parser.add_argument("--unseen-groups", action="store_true",
                        help="the test groups were never seen in training (as MS-Celeb-1M identities): train and "
                             "test the classifier on the test set's own images, split within each group")
    parser.add_argument("--out", default="reports/digits")
    parser.add_argument("--ks", default="1,2,5,10", help="comma-separated evidence sizes k")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the data split (as in training) and trials")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.error(f"--model: no such file {args.model!r}")
    try:
        ks = [int(k) for k in args.ks.split(",")]
    except ValueError:
        parser.error(f"--ks must be comma-separated integers, got {args.ks!r}")

    import keras

    import mlvae_tf

    model = keras.models.load_model(args.model)
    splits = mlvae_tf.data.load_splits(args.data, args.group_key, seed=args.seed)
    train, test = splits["train"], splits["test"]
    if args.unseen_groups:
        train, test = mlvae_tf.evaluation.split_within_groups(test, seed=args.seed)
    metrics = evaluate(model, train, test, args.out, ks=ks, trials=args.trials, seed=args.seed,
                       max_train_images=args.max_train_images)
    line = lambda name: ", ".join(f"k={k}: {v['mean']:.3f}" for k, v in metrics[name].items())  # noqa: E731
    print(f"content accuracy   {line('content_accuracy')}")
    print(f"style accuracy     {line('style_accuracy')}   (chance {metrics['chance_accuracy']:.2f})")
    print(f"content H(Y|C) bits {line('content_cond_entropy_bits')}")
    leakage = metrics["leakage"]
    print(f"swaps decoded as the content's class {leakage['swap_follows_content']:.2f}, as the style's "
          f"{leakage['swap_follows_style']:.2f}; style accuracy above chance {leakage['style_accuracy_above_chance']:.2f}")
    for warning in leakage["warnings"]:
        print(f"warning: {warning}")
    print(f"Outputs in {args.out}/: swap_grid.png, swap_grid_evidence.png, interpolation.png, generation.png, "
          "evidence.png, protocol.png, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
