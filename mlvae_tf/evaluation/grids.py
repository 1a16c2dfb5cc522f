"""Qualitative grids of the paper: swapping (Figure 4), interpolation and generation (Figure 5),
accumulating evidence (Figure 6a). Posterior means are decoded, so every grid is deterministic."""

import numpy as np

__all__ = ["swap_grid", "interpolation_grid", "generation_grid", "evidence_grid", "tile", "readable_scale"]


def tile(tiles, scale=1, gap=0):
    """Assembles a 2-D list of `[H, W, C]` images (None for a blank) into one image.

    Args:
        tiles: rows of `[H, W, C]` arrays or None.
        scale: each tile's pixels repeated `scale` times along both axes (nearest neighbour).
        gap: white pixels between tiles.

    Returns:
        `[rows * (scale * H + gap) - gap, cols * (scale * W + gap) - gap, C]`; without scale and
        gap, `[rows * H, cols * W, C]`.
    """
    shape = next(t for row in tiles for t in row if t is not None).shape
    blank = np.ones(shape, np.float32)
    grow = lambda t: np.repeat(np.repeat(blank if t is None else np.asarray(t, np.float32), scale, 0), scale, 1)  # noqa: E731
    cell = grow(None).shape
    rows = []
    for row in tiles:
        parts = []
        for j, t in enumerate(row):
            parts += [np.ones((cell[0], gap, cell[2]), np.float32)] if j and gap else []
            parts.append(grow(t))
        rows += [np.ones((gap, len(row) * (cell[1] + gap) - gap, cell[2]), np.float32)] if rows and gap else []
        rows.append(np.concatenate(parts, axis=1))
    return np.concatenate(rows, axis=0)


def readable_scale(tiles, pixels=64):
    """The smallest integer upscaling that makes every tile at least `pixels` wide and high."""
    shape = next(t for row in tiles for t in row if t is not None).shape
    return max(1, -(-pixels // min(shape[0], shape[1])))


def swap_grid(model, images, evidence=None):
    """The swapping grid: first row and column are the inputs, second row and column their
    reconstructions, and tile (i + 2, j + 2) decodes the content of image j with the style of
    image i (rows: fixed style; columns: fixed content). Posterior means are decoded.

    Args:
        model: an `MLVAE` (or anything with `encode_groups` and `decode`).
        images: `[n, *input_shape]` test images.
        evidence: optional list of `n` arrays; `evidence[j]` holds other images of image j's group,
            whose content is then accumulated with them (strategy 2); without it each image is
            its own group (strategy 1).

    Returns:
        `(grid [(n + 2) * H, (n + 2) * W, C], tiles)` where `tiles[r][c]` is the tile at row r, column c.
    """
    images = np.asarray(images, np.float32)
    n = len(images)
    if evidence is None:
        content = np.asarray(model.encode_groups(images, np.arange(n, dtype=np.int32))["content_mean"])
    else:
        stacked = np.concatenate([np.concatenate([images[j : j + 1], np.asarray(e, np.float32)]) for j, e in
                                  enumerate(evidence)])
        group_ids = np.repeat(np.arange(n, dtype=np.int32), [1 + len(e) for e in evidence])
        content = np.asarray(model.encode_groups(stacked, group_ids)["content_mean"])
    style = np.asarray(model.encode(images)["style_mean"])
    reconstructions = np.asarray(model.decode(content, style))
    swapped = np.asarray(model.decode(np.tile(content, (n, 1)), np.repeat(style, n, axis=0)))  # row i, column j
    tiles = [[None, None] + list(images), [None, None] + list(reconstructions)]
    for i in range(n):
        tiles.append([images[i], reconstructions[i]] + list(swapped[i * n : (i + 1) * n]))
    return tile(tiles), tiles


def interpolation_grid(model, first, second, steps=7, evidence=None):
    """Figure 5b: each row keeps one style and interpolates the content along it, each column keeps
    one content and interpolates the style: tile (i, j) decodes `(1 - a_j) c_1 + a_j c_2` with
    `(1 - a_i) s_1 + a_i s_2`, `a = linspace(0, 1, steps)`, from the posterior means of two images.

    Args:
        first, second: `[*input_shape]` images.
        evidence: optional pair `(images_1, images_2)`, `[n_i, *input_shape]` other images of each
            one's group: each content is then accumulated over its image and these (strategy 2,
            as Figure 5b does with 10 images); without it, over the image alone.

    Returns:
        `(grid [steps * H, steps * W, C], tiles)`.
    """
    pair = np.stack([np.asarray(first, np.float32), np.asarray(second, np.float32)])
    extra = [np.zeros((0, *pair.shape[1:]), np.float32)] * 2 if evidence is None else [
        np.asarray(images, np.float32) for images in evidence]
    group_ids = np.concatenate([[0, 1], np.zeros(len(extra[0])), np.ones(len(extra[1]))]).astype(np.int32)
    encoded = model.encode_groups(np.concatenate([pair, *extra]), group_ids)
    content, style = np.asarray(encoded["content_mean"]), np.asarray(encoded["style_mean"])[:2]
    alphas = np.linspace(0.0, 1.0, steps)[:, None]
    contents, styles = (1 - alphas) * content[0] + alphas * content[1], (1 - alphas) * style[0] + alphas * style[1]
    decoded = np.asarray(model.decode(np.tile(contents, (steps, 1)), np.repeat(styles, steps, axis=0)))
    tiles = [list(decoded[i * steps : (i + 1) * steps]) for i in range(steps)]
    return tile(tiles), tiles


def generation_grid(model, group_images, num_styles=8, seed=0):
    """Figure 5a: the group's images (first row), then decodes of the group's accumulated content
    mean with styles drawn from the prior N(0, I) (second row).

    Returns:
        `(grid, tiles)`; `tiles[1]` are the generated images.
    """
    group_images = np.asarray(group_images, np.float32)
    content = np.asarray(model.encode_groups(group_images, np.zeros(len(group_images), np.int32))["content_mean"])
    styles = np.random.default_rng(seed).normal(size=(num_styles, model.style_dim)).astype(np.float32)
    generated = np.asarray(model.decode(np.repeat(content, num_styles, axis=0), styles))
    width = max(len(group_images), num_styles)
    pad = lambda row: row + [None] * (width - len(row))  # noqa: E731
    tiles = [pad(list(group_images)), pad(list(generated))]
    return tile(tiles), tiles


def evidence_grid(model, group_images):
    """Figure 6a: one row per image of a group: the image, its reconstruction without accumulated
    evidence (content from the image alone) and with it (content from the whole group).

    Returns:
        `(grid [n * H, 3 * W, C], tiles)`.
    """
    group_images = np.asarray(group_images, np.float32)
    n = len(group_images)
    style = np.asarray(model.encode(group_images)["style_mean"])
    alone = np.asarray(model.encode_groups(group_images, np.arange(n, dtype=np.int32))["content_mean"])
    together = np.asarray(model.encode_groups(group_images, np.zeros(n, np.int32))["content_mean"])
    without, with_evidence = (np.asarray(model.decode(c, style)) for c in (alone, np.repeat(together, n, axis=0)))
    tiles = [[group_images[i], without[i], with_evidence[i]] for i in range(n)]
    return tile(tiles), tiles
