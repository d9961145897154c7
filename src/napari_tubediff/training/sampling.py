"""Random patches inside the field of view, with rot90 and flip augmentation."""

from __future__ import annotations

import numpy as np


def sample_patches(arrays: list[list[np.ndarray]], fovs: list[np.ndarray], size: int, n: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random ``size x size`` patches whose centre lies inside the FOV.

    Parameters
    ----------
    arrays : list over images of lists of (C, H, W) or (H, W) arrays
        Everything to crop at the same place (input, target, FOV...).
    fovs : list of (H, W) bool
        Where patch centres may fall.
    size : int
        Patch side (smaller than every image).
    n : int
        Number of patches.

    Returns
    -------
    list of arrays, one per entry of ``arrays[0]``, each stacked to ``(n, ..., size, size)``.
    """
    half = size // 2
    centres = []
    for f in fovs:
        c = np.argwhere(f[half:f.shape[0] - size + half + 1, half:f.shape[1] - size + half + 1]) + half
        if len(c) == 0:
            raise ValueError("an image is smaller than the patch size or has an empty FOV")
        centres.append(c)
    which = rng.integers(len(arrays), size=n)
    out = [[] for _ in arrays[0]]
    for k in which:
        y, x = centres[k][rng.integers(len(centres[k]))]
        for j, a in enumerate(arrays[k]):
            out[j].append(a[..., y - half:y - half + size, x - half:x - half + size])
    return [np.stack(o) for o in out]


def augment(batch: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random rot90 (0/90/180/270, equal odds) and flips (p = 1/2 each) per sample,
    applied to every array of the batch (last two axes are the image axes).

    Direction fields would need their components rotated too; this is for scalar
    images and masks only.
    """
    n = batch[0].shape[0]
    out = [b.copy() for b in batch]
    for i in range(n):
        k = int(rng.integers(4))
        fh, fv = rng.random() < 0.5, rng.random() < 0.5
        for b in out:
            a = np.rot90(b[i], k, axes=(-2, -1))
            if fh:
                a = a[..., :, ::-1]
            if fv:
                a = a[..., ::-1, :]
            b[i] = a
    return out
