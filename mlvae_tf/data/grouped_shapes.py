"""`grouped_shapes`: an offline TFDS data set of simple shapes with known factors of variation.

The paper's Figure 1 made real: images of 5 shapes (square, circle, triangle, cross, ring) in
6 colours, 4 scales, 8 rotations and 8 x 8 positions, every factor recorded as a label, so the
data can be grouped by any factor (shape as content and colour as style, say) and serve as the
ground truth of disentanglement metrics. Generated deterministically from a seed, without network.

Configs: `default` (64x64x3, the conv64 input, 20,000 examples) and `small` (32x32x3, 3,000
examples, built in seconds for tests).

Example:
    >>> import tensorflow_datasets as tfds
    >>> import mlvae_tf.data.grouped_shapes  # registers the builder
    >>> ds = tfds.load("grouped_shapes/small", split="train")
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

__all__ = ["GroupedShapes", "generate", "FACTORS", "SHAPES", "COLORS", "SCALES", "ROTATIONS", "POSITIONS", "render"]

SHAPES = ("square", "circle", "triangle", "cross", "ring")
COLORS = ((1.0, 0.2, 0.2), (0.2, 0.9, 0.2), (0.25, 0.4, 1.0), (1.0, 0.9, 0.1), (0.9, 0.2, 0.9), (0.1, 0.9, 0.9))
SCALES = (0.5, 0.65, 0.8, 0.95)
ROTATIONS = tuple(np.linspace(0.0, 90.0, 8, endpoint=False))  # degrees
POSITIONS = tuple(np.linspace(0.3, 0.7, 8))  # fraction of the image side, for x and y
FACTORS = {"shape": len(SHAPES), "color": len(COLORS), "scale": len(SCALES), "rotation": len(ROTATIONS),
           "position_x": len(POSITIONS), "position_y": len(POSITIONS)}


def _mask(shape, u, v):
    """Inside test of a unit-size shape on coordinates `u, v` (rotated and scaled already)."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "circle":
        return u**2 + v**2 <= 0.9**2
    if shape == "triangle":
        return (v <= 0.6) & (v >= 1.7 * np.abs(u) - 0.9)
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if shape == "ring":
        return (u**2 + v**2 <= 0.95**2) & (u**2 + v**2 >= 0.55**2)
    raise ValueError(f"unknown shape {shape!r}")


def render(size, shape, color, scale, rotation, position_x, position_y):
    """One `[size, size, 3]` uint8 image of the shape with the given factor indices, on black."""
    coords = (np.arange(size) + 0.5) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    half = 0.3 * SCALES[scale]  # half-width of the shape, as a fraction of the image side
    dx, dy = (x - POSITIONS[position_x]) / half, (y - POSITIONS[position_y]) / half
    angle = np.deg2rad(ROTATIONS[rotation])
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    inside = _mask(SHAPES[shape], u, v)
    return (inside[..., None] * np.asarray(COLORS[color]) * 255.0).round().astype(np.uint8)


def generate(num_examples, image_size=32, seed=0):
    """Shapes rendered in memory with NumPy, without building the TFDS data set (the same draws as
    its builder for the same `seed` and `num_examples`).

    Returns:
        `(images float32 [num_examples, image_size, image_size, 3] in [0, 1], factors)`, `factors`
        a dict `{factor: int [num_examples]}` with the keys of `FACTORS`.
    """
    rng = np.random.default_rng(seed)
    factors = {name: rng.integers(0, count, size=num_examples) for name, count in FACTORS.items()}
    images = np.stack([render(image_size, **{name: int(values[i]) for name, values in factors.items()})
                       for i in range(num_examples)])
    return images.astype(np.float32) / 255.0, factors


@dataclasses.dataclass
class GroupedShapesConfig(tfds.core.BuilderConfig):
    image_size: int = 64
    num_examples: int = 20_000
    seed: int = 0


class GroupedShapes(tfds.core.GeneratorBasedBuilder):
    """Shapes with colour, scale, rotation and position as labelled factors."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        GroupedShapesConfig(name="default", description="64x64x3, 20,000 examples", image_size=64,
                            num_examples=20_000),
        GroupedShapesConfig(name="small", description="32x32x3, 3,000 examples", image_size=32, num_examples=3_000),
    ]

    def _info(self):
        size = self.builder_config.image_size
        features = {"image": tfds.features.Image(shape=(size, size, 3))}
        features.update({name: tfds.features.ClassLabel(num_classes=count) for name, count in FACTORS.items()})
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("image", "shape"),
            description=__doc__.splitlines()[0],
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # generated, nothing to download
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        config = self.builder_config
        rng = np.random.default_rng(config.seed)
        factors = {name: rng.integers(0, count, size=config.num_examples) for name, count in FACTORS.items()}
        for i in range(config.num_examples):
            example = {name: int(values[i]) for name, values in factors.items()}
            yield i, {"image": render(config.image_size, **example), **example}
