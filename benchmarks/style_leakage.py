"""Style leakage on the digits against model settings, under the paper's classifier protocol.

python -m benchmarks.style_leakage [--rows all|default|options] [--data digits|fashion_mnist] [--match REGEX] [--trials 5]
    [--set KEY=VALUE ...]

Trains the ML-VAE on the bundled digits (the `make demo` split and seed) once per setting, each a
list of config overrides on `configs/digits.yaml`, and runs the supplement's protocol
(`mlvae_tf.evaluation.compute_protocol`: K = 6 test images per class and set, posterior samples)
on the test split. Prints one markdown row per setting: content accuracy at k = 1 and k = K, style
accuracy at k = 1 (chance 0.10), and the style's linear probe (a logistic regression on the
single-image style means of the 1,257 training images, scored on the test images). The README's
"Style leakage" table is its output. `--rows options` trains issue 16's options at style 10 and
adds the protocol's style accuracy on posterior means, content accuracy at k = 10 where K allows it, and
the validation negative ELBO per group (without the options' terms). `--set` adds config overrides
to every row (e.g. `--set model.likelihood=bernoulli`).
"""

import argparse
import os
import re
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.config import ConfigError, load_config  # noqa: E402
from mlvae_tf.evaluation import compute_protocol, linear_probe_accuracy  # noqa: E402
from mlvae_tf.training import build, negative_elbo  # noqa: E402

# (label, overrides); 40 epochs unless the overrides say otherwise.
SETTINGS = [
    ("style 10, groups chunked to <= 10", ["model.style_dim=10"]),
    ("style 10, whole groups (~125 images)", ["model.style_dim=10", "data.max_group_size=null"]),
    ("style 10, groups chunked to <= 3", ["model.style_dim=10", "data.max_group_size=3"]),
    ("style 10, `kl_style_weight=3`", ["model.style_dim=10", "model.kl_style_weight=3.0"]),
    ("style 10, Normal likelihood (learned variance)", ["model.style_dim=10", "model.likelihood=normal"]),
    ("style 5", ["model.style_dim=5"]),
    ("style 3", ["model.style_dim=3"]),
    ("style 2", ["model.style_dim=2"]),
    ("style 3, 120 epochs (the default)", ["train.epochs=120"]),
]
# Issue 16's options at the paper's style size (`--rows options`), read on samples and on means.
OPTIONS = [
    ("style 10 (the paper's model)", ["model.style_dim=10"]),
    ("style 10, one content sample per group", ["model.style_dim=10", "model.content_samples=group"]),
    ("style 10, reverse cycle, weight 1", ["model.style_dim=10", "model.cycle_weight=1.0"]),
    ("style 10, reverse cycle, weight 10", ["model.style_dim=10", "model.cycle_weight=10.0"]),
    ("style 10, reverse cycle 10 and one sample per group",
     ["model.style_dim=10", "model.cycle_weight=10.0", "model.content_samples=group"]),
    ("style 10, critic, weight 1", ["model.style_dim=10", "model.critic_weight=1.0"]),
    ("style 10, critic, weight 10", ["model.style_dim=10", "model.critic_weight=10.0"]),
    ("style 10, critic, weight 30", ["model.style_dim=10", "model.critic_weight=30.0"]),
    ("style 10, critic, weight 100", ["model.style_dim=10", "model.critic_weight=100.0"]),
    ("style 10, critic, weight 1000", ["model.style_dim=10", "model.critic_weight=1000.0"]),
    ("style 10, independence, weight 300", ["model.style_dim=10", "model.independence_weight=300.0"]),
    ("style 10, independence, weight 3000", ["model.style_dim=10", "model.independence_weight=3000.0"]),
    ("style 10, independence, weight 30000", ["model.style_dim=10", "model.independence_weight=30000.0"]),
    ("style 10, group variance, weight 30", ["model.style_dim=10", "model.group_variance_weight=30.0"]),
    ("style 10, group variance, weight 300", ["model.style_dim=10", "model.group_variance_weight=300.0"]),
    ("style 10, group variance, weight 3000", ["model.style_dim=10", "model.group_variance_weight=3000.0"]),
    ("style 10, group variance, weight 10000", ["model.style_dim=10", "model.group_variance_weight=10000.0"]),
    ("style 10, group variance 3000 and independence 3000",
     ["model.style_dim=10", "model.group_variance_weight=3000.0", "model.independence_weight=3000.0"]),
    ("style 10, style KL weight 3", ["model.style_dim=10", "model.kl_style_weight=3.0"]),
    ("style 10, style KL weight 10", ["model.style_dim=10", "model.kl_style_weight=10.0"]),
    ("style 10, style KL weight 30", ["model.style_dim=10", "model.kl_style_weight=30.0"]),
    ("style 10, style KL weight 100", ["model.style_dim=10", "model.kl_style_weight=100.0"]),
]
# The group variance and the style KL together (measured on Fashion-MNIST with a Bernoulli likelihood).
OPTIONS += [(f"style 10, group variance {gv} and style KL weight {kl}",
             ["model.style_dim=10", f"model.group_variance_weight={float(gv)}", f"model.kl_style_weight={float(kl)}"])
            for gv, kl in ((300, 2), (300, 3), (300, 10), (100, 3), (500, 3), (1000, 2), (1000, 3))]
OPTIONS.append(("style 10, group variance 300, style KL weight 3 and one content sample per group",
                [*dict(OPTIONS)["style 10, group variance 300 and style KL weight 3"], "model.content_samples=group"]))


def run(overrides, trials, seed=0, features="sample", data="digits"):
    if data == "digits":
        config = load_config(None, ["train.epochs=40", *overrides])
        splits = mlvae_tf.data.digits_splits(seed=seed)
    else:  # its config's epochs, sizes and protocol (K = 100)
        config = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", f"{data}.yaml"), overrides)
        splits = mlvae_tf.data.load_splits(data, seed=config["data"]["seed"])
    keras.utils.set_random_seed(seed)
    model, train, val = build(config, splits)
    model.fit(train, validation_data=val, epochs=config["train"]["epochs"], verbose=0)

    def represent(images, group_ids):
        return {name: np.asarray(value) for name, value in model.encode_groups(images, group_ids).items()}

    protocol = dict(config["evaluate"], trials=trials)
    metrics = compute_protocol(represent, splits["test"], seed=seed, progress=False, **protocol)
    if features == "both":  # the stricter reading too: posterior means
        means = compute_protocol(represent, splits["test"], seed=seed, progress=False, **{**protocol, "features": "mean"})
        metrics["style_accuracy_means"] = means["style_accuracy"]
    terms = model.evaluate(val, verbose=0, return_dict=True)
    metrics["val_loss"] = negative_elbo(terms, prefix="")  # no option's term
    return metrics, linear_probe_accuracy(model, splits["train"], splits["test"], "style_mean")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="all", choices=("all", "default", "options"),
                        help="every setting, the default's, or issue 16's options")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--data", default="digits", choices=("digits", "fashion_mnist"),
                        help="with --rows options: the data set (fashion_mnist: configs/fashion_mnist.yaml, K = 100)")
    parser.add_argument("--match", default="", help="only the settings whose label matches this regular expression")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override added to every row (repeatable)")
    args = parser.parse_args(argv)
    try:  # a wrong override is said before any training
        load_config(None, args.set)
    except ConfigError as error:
        parser.error(f"--set: {error}")
    if args.rows == "options":
        print("| Setting | content acc. k=1 | content acc. k=10 | content acc. k=K | style acc. k=1 (samples) "
              "| style acc. k=1 (means) | style linear probe | validation -ELBO per group | seconds |")
        print("|---|---|---|---|---|---|---|---|---|")
        for label, overrides in [(label, o) for label, o in OPTIONS if re.search(args.match, label)]:
            start = time.time()
            metrics, probe = run(overrides + args.set, args.trials, features="both", data=args.data)
            K = str(metrics["settings"]["K"])
            ten = metrics["content_accuracy"].get("10")  # the k = 10, where the data allows it
            print(f"| {label} | {metrics['content_accuracy']['1']['mean']:.3f} | "
                  f"{'n/a' if ten is None else format(ten['mean'], '.3f')} | "
                  f"{metrics['content_accuracy'][K]['mean']:.3f} | {metrics['style_accuracy']['1']['mean']:.3f} | "
                  f"{metrics['style_accuracy_means']['1']['mean']:.3f} | {probe:.3f} | {metrics['val_loss']:.1f} | "
                  f"{time.time() - start:.0f} |", flush=True)
        return
    settings = SETTINGS if args.rows == "all" else SETTINGS[-1:]
    print("| Setting | content acc. k=1 | content acc. k=K | style acc. k=1 | style linear probe | seconds |")
    print("|---|---|---|---|---|---|")
    for label, overrides in settings:
        start = time.time()
        metrics, probe = run(overrides + args.set, args.trials)
        K = str(metrics["settings"]["K"])
        print(f"| {label} | {metrics['content_accuracy']['1']['mean']:.3f} | {metrics['content_accuracy'][K]['mean']:.3f}"
              f" | {metrics['style_accuracy']['1']['mean']:.3f} | {probe:.3f} | {time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
