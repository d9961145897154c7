"""The figures of docs/engine.md, "Voxel spacing": the 45-degree tube of tests/test_spacing.py
sampled with spacing (3, 1, 1) against the same tube sampled isotropically, refined, then
sampled every third plane.

    python scripts/spacing_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from napari_tubediff.core.diffusion import diffuse, diffusion_rhs, diffusion_tensor  # noqa: E402
from napari_tubediff.core.refine import RefineSettings, refine  # noqa: E402
from test_spacing import ANI, ISO, KW, along  # noqa: E402


def main() -> None:
    D1 = diffusion_tensor(along(ISO.shape), KW["lambda_par"], KW["lambda_perp"])
    D3 = diffusion_tensor(along(ANI.shape), KW["lambda_par"], KW["lambda_perp"])
    rhs_err = np.abs(diffusion_rhs(ISO, D1)[::3] - diffusion_rhs(ANI, D3, spacing=(3, 1, 1))).max()
    tol = 2 * KW["steps"] * KW["dt"] * rhs_err
    iso = diffuse(ISO, along(ISO.shape), **KW)[::3]
    err = np.abs(diffuse(ANI, along(ANI.shape), spacing=(3, 1, 1), **KW) - iso).max()
    ignored = np.abs(diffuse(ANI, along(ANI.shape), **KW) - iso).max()
    print(f"diffusion, directions along the tube: tolerance {tol:.3f}; max difference with the spacing "
          f"{err:.3f}, spacing ignored {ignored:.3f}")
    ref = refine(ISO)[::3]
    a = np.abs(refine(ANI, settings=RefineSettings(spacing=(3, 1, 1))) - ref)
    b = np.abs(refine(ANI) - ref)
    print(f"refine (Hessian directions + 30 steps): mean / max difference with the spacing "
          f"{a.mean():.4f} / {a.max():.3f}, spacing ignored {b.mean():.4f} / {b.max():.3f}")


if __name__ == "__main__":
    main()
