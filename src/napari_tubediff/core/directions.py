"""Classical vessel direction fields, with no training.

Used when no learned direction head is loaded. For a bright tube the Hessian of
the smoothed field has one eigenvalue near zero (along the tube) and large
negative ones across it; the eigenvector of the eigenvalue of smallest magnitude
points along the vessel. The structure tensor gives the same answer from first
derivatives (the eigenvector of its smallest eigenvalue).
"""

from __future__ import annotations

import numpy as np
from skimage.feature import hessian_matrix, structure_tensor

from .checks import check_field

__all__ = ["estimate_directions"]


def estimate_directions(u, sigma: float = 2.0, *, method: str = "hessian",
                        rel_threshold: float = 1e-3, bright: bool | None = True) -> np.ndarray:
    """Unit vectors along the vessels of ``u``, shape ``(ndim, *u.shape)``.

    Parameters
    ----------
    u : (M, N) or (P, M, N) array_like
        Probability field or grey image (bright vessels), finite values.
    sigma : float
        Gaussian scale in pixels, about the vessel radius.
    method : {"hessian", "structure"}
        Hessian eigenvector of the smallest-magnitude eigenvalue, or the
        structure tensor's eigenvector of the smallest eigenvalue.
    rel_threshold : float
        Where the tensor's eigenvalue spread is below this fraction of its largest
        value over the image (flat background), no direction is defined and the
        vector is zero (the diffusion there is isotropic at ``lambda_perp``).
    bright : bool or None
        Hessian only: with True (vessels brighter than the background, as in a
        probability field) directions are kept only on ridges, where the
        eigenvalue of largest magnitude is negative; off the ridges the vector is
        zero, so the diffusion does not carry probability sideways out of a vessel.
        False keeps valleys (dark vessels, e.g. the green channel of a fundus
        image); None keeps both.

    Returns
    -------
    directions : ndarray of float32
        Component ``i`` along array axis ``i``; unit vectors or zero. The sign is
        arbitrary (the diffusion tensor only uses ``v v^T``).

    Examples
    --------
    >>> u = np.zeros((32, 32)); u[15:18, :] = 1      # a horizontal vessel
    >>> v = estimate_directions(u, sigma=2)
    >>> np.round(np.abs(v[:, 16, 16]), 3)            # along axis 1 (the columns)
    array([0., 1.], dtype=float32)
    """
    u = check_field(u, "u", unit_range=False)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if method == "hessian":
        comps = hessian_matrix(u, sigma=sigma, order="rc", use_gaussian_derivatives=False)
    elif method == "structure":
        comps = structure_tensor(u, sigma=sigma, order="rc")
    else:
        raise ValueError(f"method must be 'hessian' or 'structure', got {method!r}")
    ndim = u.ndim
    # skimage returns the upper triangle row by row: (00, 01, 11) or (00, 01, 02, 11, 12, 22)
    T = np.empty((*u.shape, ndim, ndim), dtype=np.float64)
    it = iter(comps)
    for i in range(ndim):
        for j in range(i, ndim):
            c = next(it)
            T[..., i, j] = c
            T[..., j, i] = c
    evals, evecs = np.linalg.eigh(T)  # ascending eigenvalues, eigenvectors in columns
    if method == "hessian":
        pick = np.argmin(np.abs(evals), axis=-1)
    else:
        pick = np.zeros(u.shape, dtype=np.intp)
    v = np.take_along_axis(evecs, pick[..., None, None], axis=-1)[..., 0]
    spread = evals[..., -1] - evals[..., 0]
    scale = spread.max()
    undefined = spread <= rel_threshold * scale if scale > 0 else np.ones(u.shape, bool)
    if method == "hessian" and bright is not None:
        strongest = np.take_along_axis(evals, np.argmax(np.abs(evals), axis=-1)[..., None], -1)[..., 0]
        undefined |= (strongest >= 0) if bright else (strongest <= 0)
    v[undefined] = 0
    return np.moveaxis(v, -1, 0).astype(np.float32)
