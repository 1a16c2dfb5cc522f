"""Qualitative grids of the paper (Figure 4): swapping style and content between test images."""

import numpy as np

__all__ = ["swap_grid", "tile"]


def tile(tiles):
    """Assembles a 2-D list of `[H, W, C]` images (None for a blank) into one `[rows*H, cols*W, C]` image."""
    shape = next(t for row in tiles for t in row if t is not None).shape
    blank = np.ones(shape, np.float32)
    return np.concatenate([np.concatenate([blank if t is None else t for t in row], axis=1) for row in tiles], axis=0)


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
