"""Synthetic volumes for the 3D models: the training sets of the shipped 3D U-Net and 3D
refiner, and the held-out volumes they are scored on (docs/models.md, docs/results.md).

Every volume is ``synthetic_vessels(SHAPE, seed=k, **GENERATOR)``: branching tubes with
exact truth and ``n_breaks`` gaps. Two inputs are made from it:

* the **clean image** (``s.image``): what the 3D U-Net learns to segment (target: the
  truth);
* the **faded image** (`faded_image`): the same image with the vessel contrast dimmed by
  ``FADE`` inside the gaps, as where a real vessel fades out or is occluded. The U-Net
  then gives the gaps a low probability; the refiner learns to raise it again from the
  U-Net's features (target: the unbroken truth), and the evaluation scores how well
  each method reconnects them.

Training seeds start at `TRAIN_SEED`, held-out seeds at `TEST_SEED`, far apart so the
sets never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..data.synthetic import SyntheticVessels, synthetic_vessels
from ..models.preprocess import preprocess

__all__ = ["SHAPE", "GENERATOR", "FADE", "GAP_REACH", "GAP_WEIGHT", "TRAIN_SEED", "TEST_SEED", "BACKBONE3D",
           "REFINER3D", "synthetic_volume", "faded_image", "volume_set", "SyntheticVolume",
           "held_out_volumes", "StraightTube", "straight_tube"]

SHAPE = (64, 64, 64)
GENERATOR = {"width": (1.0, 3.0), "n_roots": 3, "depth": 4, "n_breaks": 8}
FADE = 0.8
GAP_REACH = 4
GAP_WEIGHT = 5.0
TRAIN_SEED = 1000
TEST_SEED = 5000

# the shipped 3D models' training settings (CPU, one thread, minutes): `BackboneConfig`
# and `RefinerConfig` fields that differ from the 2D defaults
BACKBONE3D = {"ndim": 3, "base": 8, "depth": 2, "patch": 32, "batch": 4, "iters": 800, "lr": 3e-3}
REFINER3D = {"kernel": 5, "crop": 32, "batch": 4, "updates": 150, "lr": 5e-3, "restart": 50}


def synthetic_volume(seed: int, shape=SHAPE) -> SyntheticVessels:
    """The synthetic volume of ``seed`` with the 3D models' generator settings.

    Examples
    --------
    >>> synthetic_volume(0, (16, 16, 16)).truth.shape
    (16, 16, 16)
    """
    return synthetic_vessels(shape, seed=seed, **GENERATOR)


def faded_image(s: SyntheticVessels, fade: float = FADE) -> np.ndarray:
    """``s.image`` with the vessel contrast inside ``s.breaks`` dimmed by ``fade`` (0: none,
    1: the vessel vanishes there).

    `synthetic_vessels` draws vessels as ``0.5 * gaussian(truth, 0.8)`` over the
    background; blurring is linear, so subtracting ``fade * 0.5 * gaussian(breaks, 0.8)``
    leaves the same image drawn from the truth with the gaps faded.

    Examples
    --------
    >>> s = synthetic_volume(1, (32, 32, 32))
    >>> f = faded_image(s)
    >>> bool(f[s.breaks].mean() < s.image[s.breaks].mean()), bool((f[~s.truth] <= s.image[~s.truth]).all())
    (True, True)
    """
    dim = 0.5 * fade * ndi.gaussian_filter(s.breaks.astype(np.float32), 0.8)
    return np.clip(s.image - dim, 0, 1).astype(np.float32)


def volume_set(n: int, seed: int = TRAIN_SEED, *, faded: bool = False, shape=SHAPE,
               gap_weight: float = GAP_WEIGHT):
    """``(inputs, targets, weights, centres)`` of ``n`` volumes (seeds ``seed .. seed + n - 1``)
    in the form `train_backbone` and `train_refiner` take as ``train_set``.

    Inputs are the preprocessed ``(1, *shape)`` clean images, or with ``faded`` the
    `faded_image`; targets the ``(1, *shape)`` float truths. For the clean images the
    loss weights are all 1 and crop centres fall anywhere. For the faded ones crop
    centres fall within `GAP_REACH` voxels of a gap, so that every crop holds a gap to
    close, and the loss weighs those voxels ``1 + gap_weight``: the gaps are a few
    hundred voxels of a volume, and unweighted, the loss of the whole crop prefers a
    refiner that does nothing over one that closes them (docs/models.md).

    Examples
    --------
    >>> xs, ys, ws, cs = volume_set(2, shape=(16, 16, 16), faded=True)
    >>> xs[0].shape, ys[0].dtype, float(ws[1].min()), float(ws[1].max()), bool(cs[1].sum() < cs[1].size)
    ((1, 16, 16, 16), dtype('float32'), 1.0, 6.0, True)
    """
    xs, ys, ws, cs = [], [], [], []
    for k in range(seed, seed + n):
        s = synthetic_volume(k, shape)
        xs.append(preprocess(faded_image(s) if faded else s.image, channel=None)[None])
        ys.append(s.truth.astype(np.float32)[None])
        near = ndi.binary_dilation(s.breaks, iterations=GAP_REACH) if faded else np.ones(shape, bool)
        ws.append((1 + gap_weight * near).astype(np.float32) if faded else near)
        cs.append(near)
    return xs, ys, ws, cs


@dataclass
class SyntheticVolume:
    """A held-out volume in the shape `evaluation.evaluate_dataset` reads (like a DRIVE item)."""

    name: str
    volume: SyntheticVessels

    def image(self) -> np.ndarray:
        return faded_image(self.volume)

    def truth(self) -> np.ndarray:
        return self.volume.truth

    def fov(self) -> np.ndarray:
        return np.ones(self.volume.truth.shape, bool)

    def truth2(self) -> None:
        return None


def held_out_volumes(n: int, seed: int = TEST_SEED, shape=SHAPE) -> list[SyntheticVolume]:
    """``n`` held-out volumes (seeds ``seed ..``), their faded images as input.

    Examples
    --------
    >>> [v.name for v in held_out_volumes(2, shape=(16, 16, 16))]
    ['synthetic3d_5000', 'synthetic3d_5001']
    """
    return [SyntheticVolume(f"synthetic3d_{k}", synthetic_volume(k, shape)) for k in range(seed, seed + n)]


@dataclass
class StraightTube:
    """A straight tube with a known axis (`straight_tube`): ``volume`` as `synthetic_vessels`
    returns it, ``dist`` (voxels to the axis) and ``along`` (position along the axis,
    0 at the volume's centre), to score directions against ``axis``."""

    axis: np.ndarray
    volume: SyntheticVessels
    dist: np.ndarray
    along: np.ndarray


def straight_tube(axis, shape=(40, 40, 40), radius: float = 2.0, gap: float = 0.0, seed: int = 0,
                  noise: float = 0.05) -> StraightTube:
    """A straight tube through the volume's centre along ``axis``, drawn as `synthetic_vessels`
    draws vessels (``0.5 * gaussian(truth, 0.8)`` over a background of 0.3, Gaussian
    noise), with a gap of length ``gap`` at the centre in ``breaks`` (`faded_image` fades it).

    Examples
    --------
    >>> t = straight_tube([0, 0, 1], (16, 16, 16), gap=4)
    >>> bool(t.volume.truth[8, 8].all()), int(t.volume.breaks[8, 8].sum())
    (True, 4)
    """
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij"))
    along = np.tensordot(axis, grid, 1)
    dist = np.linalg.norm(grid - along * axis.reshape(-1, *(1,) * len(shape)), axis=0)
    truth = dist <= radius
    breaks = truth & (np.abs(along) <= gap / 2)
    image = 0.3 + 0.5 * ndi.gaussian_filter(truth.astype(np.float32), 0.8)
    image = np.clip(image + noise * rng.standard_normal(shape), 0, 1).astype(np.float32)
    prob = ndi.gaussian_filter((truth & ~breaks).astype(np.float32), 0.7)
    vol = SyntheticVessels(image=image, probability=prob, truth=truth, breaks=breaks,
                           centerline=truth & (dist <= 0.5))
    return StraightTube(axis=axis, volume=vol, dist=dist, along=along)


#: `microscopy_volume`'s defaults: tubes 1.5 to 8 voxels in radius drawn on an isotropic grid,
#: then sampled every `MICROSCOPY_Z` planes (voxels 3 times longer along z, as in light-sheet
#: and two-photon stacks).
MICROSCOPY_SHAPE = (72, 72, 72)
MICROSCOPY_Z = 3


def microscopy_volume(seed: int, shape=MICROSCOPY_SHAPE, z_step: int = MICROSCOPY_Z,
                      photons: float = 40.0) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A synthetic volume with what real microscopy adds to `synthetic_volume`: ``(image uint16,
    truth bool, spacing)``.

    Branching tubes of radius 1.5 to 8 voxels (``width`` 3 to 16), filled (the lumen as bright
    as the wall), each branch at its own brightness (0.4 to 1); a point spread function 2.5
    times longer along z than across; an attenuation along z (the far planes at half the
    brightness); a dim uneven background; Poisson noise at ``photons`` counts for the
    brightest vessel; then every ``z_step``-th plane (spacing ``(z_step, 1, 1)``). Used to
    choose the 3D backbone's settings (`models.classical.VolumeBackbone`) without touching
    the real volumes they are scored on (scripts/volume_results.py).

    Examples
    --------
    >>> img, truth, spacing = microscopy_volume(0, (24, 32, 32))
    >>> img.shape, truth.shape, spacing, img.dtype.name
    ((8, 32, 32), (8, 32, 32), (3.0, 1.0, 1.0), 'uint16')
    >>> bool(img[truth].mean() > 2 * img[~truth].mean())
    True
    """
    rng = np.random.default_rng(seed)
    s = synthetic_vessels(shape, seed=seed, width=(3.0, 16.0), n_roots=3, depth=3, n_breaks=0,
                          noise=0.0, blur=0.0)
    truth = s.truth
    # each branch (a piece between junctions is too fine: use connected pieces of the
    # truth cut into blocks) at its own brightness
    lab, n = ndi.label(truth)
    block = (np.indices(shape) // 16).sum(axis=0) % 5
    gain = 0.4 + 0.6 * rng.random((max(n, 1) + 1, 5))
    signal = np.where(truth, gain[lab, block], 0.0)
    signal = ndi.gaussian_filter(signal, (2.5, 1.0, 1.0))
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    attenuation = 1.0 - 0.5 * zz / max(shape[0] - 1, 1)
    background = 0.08 + 0.04 * np.sin(np.pi * yy / shape[1]) * np.cos(np.pi * xx / (2 * shape[2]))
    clean = (signal + background) * attenuation
    image = rng.poisson(clean * photons).astype(np.float64) * (20000 / photons) + 200
    keep = slice(z_step // 2, None, z_step)
    return (np.clip(image[keep], 0, 65535).astype(np.uint16), truth[keep].copy(),
            (float(z_step), 1.0, 1.0))
