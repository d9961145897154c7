"""Random patches inside the field of view, with rot90 / flip (2D) or axis-permutation /
flip (3D) augmentation."""

from __future__ import annotations

import numpy as np


def sample_patches(arrays: list[list[np.ndarray]], fovs: list[np.ndarray], size: int, n: int,
                   rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random patches of side ``size`` whose centre lies inside the FOV, 2D or 3D.

    Parameters
    ----------
    arrays : list over images of lists of (C, *spatial) or (*spatial) arrays
        Everything to crop at the same place (input, target, FOV...).
    fovs : list of (*spatial) bool
        Where patch centres may fall; their dimension (2 or 3) is the patches'. Images
        with no such place far enough from their border are skipped.
    size : int
        Patch side along every spatial axis (smaller than every image).
    n : int
        Number of patches.

    Returns
    -------
    list of arrays, one per entry of ``arrays[0]``, each stacked to ``(n, ..., size, size)``
    (``size`` along each spatial axis).

    Examples
    --------
    >>> vol = np.zeros((1, 20, 20, 20), np.float32)
    >>> [p.shape for p in sample_patches([[vol]], [np.ones((20, 20, 20), bool)], 8, 3,
    ...                                  np.random.default_rng(0))]
    [(3, 1, 8, 8, 8)]
    """
    half = size // 2
    centres = []
    for f in fovs:
        inner = tuple(slice(half, s - size + half + 1) for s in f.shape)
        centres.append(np.argwhere(f[inner]) + half)
    usable = [k for k, c in enumerate(centres) if len(c)]
    if not usable:
        raise ValueError("every image is smaller than the patch size or has an empty FOV")
    # an image with no possible centre is skipped (e.g. a volume whose gaps all lie near its faces)
    which = rng.integers(len(arrays), size=n) if len(usable) == len(arrays) else rng.choice(usable, size=n)
    out = [[] for _ in arrays[0]]
    for k in which:
        c = centres[k][rng.integers(len(centres[k]))]
        box = tuple(slice(p - half, p - half + size) for p in c)
        for j, a in enumerate(arrays[k]):
            out[j].append(a[(..., *box)])
    return [np.stack(o) for o in out]


def unpack_train_set(train_set):
    """``(inputs, targets, fovs, centres)`` of a ``train_set``: ``(inputs, targets, fovs)``,
    or with a fourth list of masks where patch centres may fall (default: the FOVs;
    e.g. near the gaps a refiner should learn to close, while the loss still covers
    the whole FOV of every patch).

    Examples
    --------
    >>> unpack_train_set(([1], [2], [3]))
    ([1], [2], [3], [3])
    """
    xs, ys, fs, *rest = train_set
    if len(rest) > 1:
        raise ValueError(f"a training set holds 3 or 4 lists, got {len(train_set)}")
    return xs, ys, fs, (rest[0] if rest else fs)


def augment(batch: list[np.ndarray], rng: np.random.Generator, ndim: int = 2) -> list[np.ndarray]:
    """The same random symmetry of the square (2D) or the cube (3D) per sample, applied to
    every array of the batch (the last ``ndim`` axes are the spatial ones).

    2D: rot90 by 0/90/180/270 degrees (equal odds) and flips (p = 1/2 each), the
    draws in the order the shipped 2D weights were trained with. 3D: a random
    permutation of the three axes and a flip of each (p = 1/2): all 48 symmetries
    of the cube, equally likely.

    Direction fields would need their components rotated too; this is for scalar
    images and masks only.

    Examples
    --------
    >>> b = np.arange(8.0).reshape(1, 1, 2, 2, 2)
    >>> sorted(augment([b], np.random.default_rng(1), ndim=3)[0].ravel()) == list(range(8))
    True
    """
    n = batch[0].shape[0]
    out = [b.copy() for b in batch]
    for i in range(n):
        if ndim == 2:
            k = int(rng.integers(4))
            fh, fv = rng.random() < 0.5, rng.random() < 0.5
            ops = [lambda a, k=k: np.rot90(a, k, axes=(-2, -1))]
            ops += [lambda a: a[..., :, ::-1]] if fh else []
            ops += [lambda a: a[..., ::-1, :]] if fv else []
        elif ndim == 3:
            perm = rng.permutation(3)
            flips = rng.random(3) < 0.5
            ops = [lambda a, p=perm: np.transpose(a, (*range(a.ndim - 3), *(a.ndim - 3 + p)))]
            ops += [lambda a, f=flips: np.flip(a, [a.ndim - 3 + j for j in range(3) if f[j]])]
        else:
            raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
        for b in out:
            a = b[i]
            for op in ops:
                a = op(a)
            b[i] = a
    return out
