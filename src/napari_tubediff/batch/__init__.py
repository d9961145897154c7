"""Batch processing with dask: chunked refinement with exact halos, and folders of images on a cluster.

Kept apart from ``napari_tubediff.core`` (numpy/scipy/scikit-image/torch only) so
that the core never imports dask.
"""

from .chunked import auto_steps_per_exchange, chunked_directions, diffusion_reach, refine_chunked

__all__ = ["refine_chunked", "chunked_directions", "diffusion_reach", "auto_steps_per_exchange"]
