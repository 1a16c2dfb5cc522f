"""Evidence accumulated as observations arrive: a group's content posterior, updated batch by batch.

The product of Normals (eq. 7) depends on a group's observations only through two sums, its
natural parameters: the precision sum `sum_i 1 / var_i` and the precision-weighted mean sum
`sum_i mean_i / var_i`. The mixture's moment-matched Normal (supplement section 1) depends on the
count, `sum_i mean_i` and `sum_i (var_i + mean_i^2)`. New observations add to the sums, and
removed ones subtract, so a serving system keeps a running estimate of a group (an identity, a
device) without encoding its old observations again.

`statistics` and `posterior` are NumPy on the per-observation outputs of any encoder: `model.encode`,
the exported SavedModel's `serving_default`, or `onnx/encoder.onnx`. A client can run them (or copy
them) without TensorFlow. `GroupPosterior` holds one group's sums for a Keras model.
"""

import numpy as np

# The clamp of `mlvae_tf.grouping.clamp_log_var`, repeated here so that this module needs NumPy only.
LOG_VAR_MIN, LOG_VAR_MAX = -10.0, 10.0
STATISTICS = ("count", "precision", "weighted_mean", "mean", "second_moment")

__all__ = ["STATISTICS", "statistics", "posterior", "GroupPosterior"]


def statistics(content_mean, content_log_var):
    """The sums that a group's content posterior depends on, over the rows given.

    Args:
        content_mean, content_log_var: `[N, d]` per-observation content posteriors of the group's
            observations (the encoder's outputs of the same names).

    Returns:
        float64 `[5, d]`, the rows of `STATISTICS`: the count (on every column), the precision sum,
        the precision-weighted mean sum, the mean sum and the second-moment sum. The statistics of
        two sets of observations add up to those of their union: add to update, subtract to remove.
    """
    mean = np.asarray(content_mean, np.float64)
    log_var = np.clip(np.asarray(content_log_var, np.float64), LOG_VAR_MIN, LOG_VAR_MAX)
    if mean.ndim != 2 or mean.shape != log_var.shape:
        raise ValueError(f"`content_mean` and `content_log_var` must both have shape [N, d], got {mean.shape} and "
                         f"{log_var.shape}.")
    precision, var = np.exp(-log_var), np.exp(log_var)
    return np.stack([np.full(mean.shape[1], len(mean), np.float64), precision.sum(0), (mean * precision).sum(0),
                     mean.sum(0), (var + mean ** 2).sum(0)])


def posterior(stats, aggregation="product"):
    """The group's content posterior from its `statistics`: what `encode_groups` gives for the group.

    Args:
        stats: float `[5, d]`, a sum of `statistics`.
        aggregation: the model's, "product" (eq. 7) or "mixture" (the mixture's moments).

    Returns:
        `(mean, log_var)`, float32 `[d]` each; the prior N(0, I) for a group with no observations.
    """
    stats = np.asarray(stats, np.float64)
    count, precision, weighted_mean, mean_sum, second_sum = stats
    if count[0] < 0.5:  # nothing left: the prior, whatever rounding the removals left in the sums
        return np.zeros(stats.shape[1], np.float32), np.zeros(stats.shape[1], np.float32)
    if aggregation == "product":
        return (weighted_mean / precision).astype(np.float32), (-np.log(precision)).astype(np.float32)
    if aggregation == "mixture":
        mean = mean_sum / count
        var = np.maximum(second_sum / count - mean ** 2, np.exp(LOG_VAR_MIN))
        return mean.astype(np.float32), np.log(var).astype(np.float32)
    raise ValueError(f"`aggregation` must be 'product' or 'mixture', got {aggregation!r}.")


class GroupPosterior:
    """One group's content posterior, accumulated as its observations arrive.

    Example:
        >>> gp = GroupPosterior(model)
        >>> gp.update(first_images).update(more_images)   # [n, *input_shape] each
        >>> gp.mean, gp.log_var                            # [content_dim] each
        >>> gp.remove(first_images)                        # as if they had never come

    `mean` and `log_var` equal `model.encode_groups` on the group's current observations at once.
    A removal must give images that were added (the sums cannot tell); removing more observations
    than the group holds raises `ValueError`.

    Args:
        model: a trained `MLVAE` (an encoder and an `aggregation`), or a `MultiLevelVAE`.
        grouping: for a `MultiLevelVAE`, the grouping whose content the group is of.
    """

    def __init__(self, model, grouping=None):
        if getattr(model, "aggregation", None) not in ("product", "mixture"):
            raise ValueError(f"`model` must be an MLVAE (a model with a group posterior), got {type(model).__name__}.")
        slices = getattr(model, "content_slices", None)
        if (slices is None) != (grouping is None) or (slices is not None and grouping not in slices):
            expected = f"one of {list(slices)}" if slices else "None for a model with one grouping"
            raise ValueError(f"`grouping` must be {expected}, got {grouping!r}.")
        self.model = model
        self.columns = slice(*slices[grouping]) if slices else slice(None)
        self.statistics = np.zeros((len(STATISTICS), model.content_dim if slices is None else
                                    slices[grouping][1] - slices[grouping][0]))

    @property
    def count(self):
        """The number of observations the group holds."""
        return int(round(self.statistics[0, 0]))

    @property
    def mean(self):
        return posterior(self.statistics, self.model.aggregation)[0]

    @property
    def log_var(self):
        return posterior(self.statistics, self.model.aggregation)[1]

    def update(self, images):
        """Adds the observations `images` `[n, *input_shape]`; returns `self`."""
        self.statistics = self.statistics + self._statistics(images)
        return self

    def remove(self, images):
        """Takes the observations `images` `[n, *input_shape]` out again; returns `self`."""
        removed = self._statistics(images)
        if removed[0, 0] > self.count:
            raise ValueError(f"`images`: cannot remove {int(removed[0, 0])} observations from a group of {self.count}.")
        self.statistics = self.statistics - removed
        if self.count == 0:
            self.statistics = np.zeros_like(self.statistics)  # exactly the prior again, no rounding left
        return self

    def _statistics(self, images):
        encoded = self.model.encode(images)
        return statistics(np.asarray(encoded["content_mean"])[:, self.columns],
                          np.asarray(encoded["content_log_var"])[:, self.columns])
