"""Several groupings at once: a content latent per grouping, and a style latent per observation.

The paper notes that its approach "is general in that there can be more than two factors" and
that "multiple groupings are possible along different factors of variation"; this model trains
on them together. An observation belongs to one group in each grouping k (its shape, and its
colour), and the generative model is p(x_i | c^1_{g_1(i)}, ..., c^K_{g_K(i)}, s_i), each content
shared by a group of its own grouping, with standard Normal priors.

The objective of a batch generalises eq. 5. With q(c^k_g | X_g) the product of the Normals of the
group's members (eq. 7) for every grouping k,

    ELBO_b = sum_i [E_q log p(x_i | c^1, ..., c^K, s_i) - KL(q(s_i | x_i) || p(s))]
             - sum_k sum_{g in grouping k} KL(q(c^k_g | X_g) || p(c^k)),

a lower bound of sum_i log p(x_i) under the model: every content latent is counted once per group
of its grouping, and each observation once. `fit` minimises `-ELBO_b / G_1`, G_1 the number of
groups of the first grouping in the batch: the ML-VAE's per-group loss (eq. 5) when K = 1, which
this model then equals. The batches of `mlvae_tf.data.multi_grouped_dataset` keep the first
grouping's groups whole (or chunked) and cut the others to the members each batch holds.
"""

import itertools

import keras
import tensorflow as tf

from mlvae_tf import validation
from mlvae_tf.models.mlvae import DEPENDENCE, MLVAE

__all__ = ["MultiLevelVAE"]


@keras.saving.register_keras_serializable(package="mlvae_tf")
class MultiLevelVAE(MLVAE):
    """The ML-VAE with several groupings, a content latent for each.

    `fit` takes `(images [N, *input_shape], group_ids int [N, K])` pairs, column k the batch's
    group ids of grouping k, in the order of `content_dims`, as `mlvae_tf.data.multi_grouped_dataset`
    yields them. The encoder's content head is the concatenation of the contents, in that order
    (`content_slices`); `decode` takes them concatenated.

    Args:
        input_shape: shape of one observation.
        content_dims: dict `{grouping: content size}`, e.g. `{"shape": 8, "colour": 4}`.
        style_dim: size of the style latent (per observation).
        **kwargs: as `MLVAE` (architecture, likelihood, aggregation, hidden_units, KL weights, seed).
            `independence_weight` weighs the sum over the groupings of the HSIC between the style
            means and the batch's groups of each (logged as `independence_<grouping>` and their sum
            `independence`), to keep every grouping's factor out of the style, and
            `group_variance_weight` the same sum of `losses.group_variance`. `critic_weight` weighs
            a critic with one output per grouping, each telling whether two style means share a
            group of that grouping (logged as `critic_<grouping>`, cross-entropies, and their sum
            `critic`, which the loss weighs); `cycle_weight` pairs groups of one grouping and
            must be 0.

    Example:
        >>> model = MultiLevelVAE(input_shape=(32, 32, 3), content_dims={"shape": 8, "colour": 4}, style_dim=6)
        >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
        >>> model.fit(multi_grouped_dataset(x, {"shape": shapes, "colour": colours}), epochs=10)
    """

    def __init__(self, input_shape, content_dims, style_dim=10, **kwargs):
        if not isinstance(content_dims, dict) or not content_dims:
            raise ValueError(f"`content_dims` must be a non-empty dict {{grouping: size}}, got {content_dims!r}.")
        dims = {str(name): validation.check_positive_int(size, f"content_dims[{name!r}]")
                for name, size in content_dims.items()}
        kwargs.pop("content_dim", None)  # the sum of `content_dims` (a saved config holds it)
        if kwargs.get("cycle_weight"):
            raise ValueError("`cycle_weight` is not available with several groupings: it must be 0.")
        self.content_dims = dims  # before `MLVAE.__init__`, whose critic has one output per grouping
        self.groupings = tuple(dims)
        super().__init__(input_shape, content_dim=sum(dims.values()), style_dim=style_dim, **kwargs)
        stops = list(itertools.accumulate(dims.values()))
        self.content_slices = {name: (stop - dims[name], stop) for name, stop in zip(self.groupings, stops)}
        for name in self.groupings:
            self.trackers[f"kl_{name}"] = keras.metrics.Mean(name=f"kl_{name}")
        for term in ("critic", *DEPENDENCE):
            if getattr(self, f"{term}_weight"):
                for name in self.groupings:
                    self.trackers[f"{term}_{name}"] = keras.metrics.Mean(name=f"{term}_{name}")

    def get_config(self):
        config = {**super().get_config(), "content_dims": dict(self.content_dims)}
        config.pop("content_dim")
        return config

    def split(self, content):
        """`{grouping: content[..., slice]}` of a concatenated content `[N, content_dim]`."""
        return {name: content[..., a:b] for name, (a, b) in self.content_slices.items()}

    def encode_groups(self, images, group_ids):
        """The content posterior of every group of every grouping, and the per-observation styles.

        Args:
            images: float `[N, *input_shape]`.
            group_ids: dict `{grouping: int [N]}` (or an int array `[N, K]` in the order of
                `content_dims`), each in `[0, G_k)` with every group non-empty.

        Returns:
            dict: `{grouping}_mean`, `{grouping}_log_var` `[G_k, d_k]` for each grouping;
            `style_mean`, `style_log_var` `[N, style_dim]`.
        """
        images = validation.check_images(images, self.input_shape)
        columns = self._columns(group_ids)
        rows = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]
        encoded = self._encode(images)
        out = {"style_mean": encoded["style_mean"], "style_log_var": encoded["style_log_var"]}
        for name, ids in columns.items():
            ids, num_groups = validation.check_group_ids(ids, rows, name=f"group_ids[{name!r}]")
            a, b = self.content_slices[name]
            out[f"{name}_mean"], out[f"{name}_log_var"] = self._aggregate(
                encoded["content_mean"][:, a:b], encoded["content_log_var"][:, a:b], ids, num_groups)
        return out

    def _sample_contents(self, encoded, group_ids, num_groups, num_segments, noise):
        """Each grouping's content sample per observation, concatenated `[N, content_dim]`, and each
        grouping's content KL per group, `{grouping: [segments]}` (`MLVAE._content` on its slice and
        its column of `group_ids` `[N, K]`; `segments` is each grouping's own number of groups when
        `num_segments` is None)."""
        contents, kls = [], {}
        for k, (name, (a, b)) in enumerate(self.content_slices.items()):
            ids = group_ids[:, k]
            segments = tf.reduce_max(ids) + 1 if num_segments is None else num_segments
            component = None if noise.get("component") is None else noise["component"][:, k]
            content, kls[name] = self._content(encoded["content_mean"][:, a:b], encoded["content_log_var"][:, a:b],
                                               ids, segments, noise["content"][:, a:b], component)
            contents.append(content)
        return tf.concat(contents, axis=1), kls

    def _style_dependence(self, style_mean, group_ids, name, measure):
        """A dependence term of every grouping: `<name>_<grouping>`, `measure` of the style means
        and the batch's groups of that grouping (`mlvae.DEPENDENCE`), and their sum, `<name>`,
        which the loss weighs."""
        terms = {f"{name}_{grouping}": measure(style_mean, group_ids[:, k])
                 for k, grouping in enumerate(self.groupings)}
        return {name: tf.add_n(list(terms.values())), **terms}

    def _critic_terms(self, style, group_ids, num_groups, num_segments):
        """`critic_<grouping>`, the critic's cross-entropy on the pairs of that grouping's groups
        (its output k for grouping k), and their sum, `critic`."""
        terms = {}
        for k, name in enumerate(self.groupings):
            ids = group_ids[:, k]
            segments = tf.reduce_max(ids) + 1 if num_segments is None else num_segments
            terms[f"critic_{name}"] = self._critic_cross_entropy(style, ids, segments, head=k)
        return {"critic": tf.add_n(list(terms.values())), **terms}

    def _columns(self, group_ids):
        """`{grouping: ids [N]}` from a dict or an `[N, K]` array."""
        if isinstance(group_ids, dict):
            if set(group_ids) != set(self.groupings):
                raise ValueError(f"`group_ids` must have one entry per grouping {list(self.groupings)}, got "
                                 f"{sorted(group_ids)}.")
            return {name: group_ids[name] for name in self.groupings}
        ids = tf.convert_to_tensor(group_ids)
        if ids.shape.rank != 2 or ids.shape[1] != len(self.groupings):
            raise ValueError(f"`group_ids` must be a dict {{grouping: ids}} or an array [N, {len(self.groupings)}] "
                             f"(one column per grouping {list(self.groupings)}), got shape {ids.shape}.")
        return {name: ids[:, k] for k, name in enumerate(self.groupings)}

    def _groupings_in_batch(self):
        return len(self.groupings)
