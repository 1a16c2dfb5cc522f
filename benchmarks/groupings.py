"""Two groupings at once: the grouped shapes grouped by shape and by colour (`MultiLevelVAE`).

python -m benchmarks.groupings [--epochs 80] [--style-dim 8] [--max-group-size 10] [--examples 12000]
    [--kl-style-weight 1] [--kl-style-warmup 0] [--independence-weight 0] [--group-variance-weight 0]
    [--critic-weight 0] [--content-samples observation] [--likelihood bernoulli] [--observation-scale 1]
    [--architecture mlp] [--probe-images 2000] [--out docs]

Renders the grouped shapes (32x32x3; 5 shapes, 6 colours, 4 scales, 8 rotations, 8 x 8 positions,
`mlvae_tf.data.grouped_shapes.generate`, seed 0), holds out a random sixth of the images, and
trains a `MultiLevelVAE` with a shape content (8), a colour content (4) and a style (8) on batches
of `multi_grouped_dataset` (16 shape groups of at most 10 images each). Prints the latent x factor
matrix (`mlvae_tf.evaluation.latent_factor_accuracy`: a logistic regression from each latent's
posterior means to each factor, then an MLP probe, on `--probe-images` training and 2,000 test
images; the contents read from one image, k = 1, and accumulated over 10 images that share the
factor's value, k = 10) as a markdown table, then as JSON the rotation read from the style on
each shape's images alone (`style_rotation_by_shape`) and the last epoch's loss and negative
ELBO per group (without the KL weights and penalties), and writes `groupings_factors.png` (the
k = 10 matrix as a heat map) and `groupings_swap_color.png` / `groupings_swap_shape.png` (one
latent swapped, the others kept). `--kl-style-warmup N` weighs the style KL 10 for the first N
epochs (`StyleKLWarmup`), so that the contents learn their factors before the style can take them.
The README's "Several groupings" section is its output.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import mlvae_tf  # noqa: E402
from mlvae_tf.data.grouped_shapes import SHAPES, generate  # noqa: E402
from mlvae_tf.evaluation import latent_factor_accuracy, latent_swap_grid, probe_accuracy  # noqa: E402
from mlvae_tf.training import negative_elbo  # noqa: E402

GROUPINGS = {"shape": 8, "color": 4}
FACTORS = ("shape", "color", "scale", "rotation", "position_x", "position_y")


class StyleKLWarmup(keras.callbacks.Callback):
    """The style KL weighed `weight` for the first `epochs` epochs, then the model's own weight
    (the train function rebuilt at the switch: the weight is a constant of the traced step)."""

    def __init__(self, epochs, weight=10.0):
        super().__init__()
        self.epochs, self.weight, self.final = epochs, weight, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.final is None:
            self.final = self.model.kl_style_weight
        weight = self.weight if epoch < self.epochs else self.final
        self._weigh(weight)

    def on_train_end(self, logs=None):  # a run shorter than the warm-up leaves the model its own weight
        if self.final is not None:
            self._weigh(self.final)

    def _weigh(self, weight):
        if self.model.kl_style_weight != weight:
            self.model.kl_style_weight = weight
            self.model.make_train_function(force=True)


def style_rotation_by_shape(model, images, factors, train, test):
    """The rotation read from the style's means on each shape's images alone (MLP probe fitted on the
    rows `train`, scored on `test`): what the style holds of the rotation whatever angle it calls
    zero for each shape. Chance is 1/8; circles and rings do not show their rotation.

    Returns:
        dict `{shape name: accuracy}`.
    """
    style = np.asarray(model.encode(images[np.concatenate([train, test])])["style_mean"])
    style_train, style_test = style[: len(train)], style[len(train):]
    result = {}
    for index, name in enumerate(SHAPES):
        fit, score = factors["shape"][train] == index, factors["shape"][test] == index
        result[name] = round(probe_accuracy(style_train[fit], factors["rotation"][train][fit], style_test[score],
                                            factors["rotation"][test][score], probe="mlp"), 3)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--style-dim", type=int, default=8)
    parser.add_argument("--max-group-size", type=int, default=10, help="of the first grouping's chunks")
    parser.add_argument("--examples", type=int, default=12_000)
    parser.add_argument("--kl-style-weight", type=float, default=1.0, help="the style KL's weight (1: the ELBO)")
    parser.add_argument("--kl-style-warmup", type=int, default=0, metavar="N",
                        help="weigh the style KL 10 for the first N epochs, then --kl-style-weight")
    parser.add_argument("--independence-weight", type=float, default=0.0,
                        help="the HSIC of the style and each grouping, weighed (0: the ML-VAE's objective)")
    parser.add_argument("--group-variance-weight", type=float, default=0.0,
                        help="the style's share of variance between each grouping's groups, weighed (0: the ML-VAE's)")
    parser.add_argument("--critic-weight", type=float, default=0.0,
                        help="a critic on pairs of styles per grouping, its gradient reversed (0: the ML-VAE's)")
    parser.add_argument("--content-samples", default="observation", choices=("observation", "group"),
                        help="one content sample per observation (Algorithm 1) or one per group")
    parser.add_argument("--likelihood", default="bernoulli", choices=("bernoulli", "normal", "normal_fixed"))
    parser.add_argument("--observation-scale", type=float, default=1.0, help="of the normal_fixed likelihood")
    parser.add_argument("--architecture", default="mlp", choices=mlvae_tf.networks.ARCHITECTURES,
                        help="the networks (conv64: the paper's convolutional ones, on the 32x32 images; spatial: "
                             "the MLP's, its drawing moved by the style's first four dimensions; equivariant: "
                             "spatial, the style's angle read by a network that turns with the image)")
    parser.add_argument("--probe-images", type=int, default=2000,
                        help="training images of the probes (the rotation needs more than 2,000 to be read)")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args(argv)
    training_images = args.examples - args.examples // 6
    if not 0 < args.probe_images <= training_images:
        parser.error(f"--probe-images must be in [1, {training_images}] (the training images), got {args.probe_images}")
    if args.kl_style_warmup < 0:
        parser.error(f"--kl-style-warmup must be 0 or more epochs, got {args.kl_style_warmup}")
    start = time.time()
    keras.utils.set_random_seed(0)
    images, factors = generate(args.examples, image_size=32, seed=0)
    order = np.random.default_rng(0).permutation(len(images))
    test, train = order[: len(order) // 6], order[len(order) // 6:]
    ds = mlvae_tf.data.multi_grouped_dataset(images[train], {name: factors[name][train] for name in GROUPINGS},
                                             groups_per_batch=16, max_group_size=args.max_group_size, seed=0)
    try:  # the model's own checks of the flags (a negative weight, a spatial style under 4), in one line
        model = mlvae_tf.MultiLevelVAE(
            input_shape=images.shape[1:], content_dims=GROUPINGS, style_dim=args.style_dim,
            kl_style_weight=args.kl_style_weight, independence_weight=args.independence_weight,
            group_variance_weight=args.group_variance_weight, critic_weight=args.critic_weight,
            content_samples=args.content_samples, likelihood=args.likelihood,
            observation_scale=args.observation_scale, architecture=args.architecture, seed=0)
    except ValueError as error:
        parser.error(str(error))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(ds, epochs=args.epochs, verbose=2, callbacks=[StyleKLWarmup(args.kl_style_warmup)]).history
    trained = time.time() - start
    probe_train, probe_test = train[: args.probe_images], test[:2000]
    probe = {part: (images[index], {f: factors[f][index] for f in FACTORS})
             for part, index in (("train", probe_train), ("test", probe_test))}
    results = {k: latent_factor_accuracy(model, probe["train"], probe["test"], k=k) for k in (1, 10)}
    strict = {str(k): latent_factor_accuracy(model, probe["train"], probe["test"], k=k, probe="mlp")["accuracy"]
              for k in (1, 10)}
    os.makedirs(args.out, exist_ok=True)
    from mlvae_tf.evaluate import factor_heat_map, factor_table, save_tiles

    factor_heat_map(results[10], os.path.join(args.out, "groupings_factors.png"),
                    "Which factor each latent holds (linear probe; contents accumulated over 10 images)")

    picked = test[[np.flatnonzero((factors["shape"][test] == s) & (factors["color"][test] == s))[0] for s in range(5)]]
    for latent in GROUPINGS:
        save_tiles(latent_swap_grid(model, images[picked], latent),
                   os.path.join(args.out, f"groupings_swap_{latent}.png"),
                   f"Row i, column j: image i with the {latent} latent of image j (all else kept)")
    print(factor_table({str(k): result["accuracy"] for k, result in results.items()}, results[1]["chance"]))
    print("\nThe same read by an MLP probe (2 x 128 units, `probe=\"mlp\"`):")
    print(factor_table(strict, results[1]["chance"]))
    last = {name: values[-1] for name, values in history.items()}
    by_shape = style_rotation_by_shape(model, images, factors, probe_train, probe_test)
    print(json.dumps({"style_rotation_by_shape": by_shape}))
    print(json.dumps({"final_loss": round(last["loss"], 1), "negative_elbo": round(negative_elbo(last, prefix=""), 1),
                      "train_s": round(trained),
                      "total_s": round(time.time() - start)}))
    return results


if __name__ == "__main__":
    main()
