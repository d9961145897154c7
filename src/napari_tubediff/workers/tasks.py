"""The panels' heavy work as functions a child process runs (`workers.process.run_in_child`).

Each is the CLI's own core call (`models.backbones.segment_image`,
`training.finetune.finetune`) with its models sent as plain data: a U-Net holds a
function that does not pickle (``F.max_pool2d``), so models travel as `pack` ed specs
(class, config, weights as a state dict, metadata) and are rebuilt on the other side with
`unpack`. No napari, no Qt.
"""

from __future__ import annotations

import numpy as np


def warm_optimiser() -> None:
    """Make (and drop) one optimiser: torch imports ``torch._dynamo`` (about 900 modules, 2.9 s
    at load 9) the first time, which fine-tuning's first update would otherwise wait for.

    Examples
    --------
    >>> warm_optimiser()   # cheap once done
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def warm_kernels() -> None:
    """Load numba's 2D diffusion kernels (from numba's cache, or compiled), which the first
    diffusion step would otherwise wait for (4 s at load 9).

    Examples
    --------
    >>> warm_kernels()   # cheap once done
    """
    from ..core.diffusion import iter_diffusion

    u = np.zeros((16, 16), np.float32)
    v = np.zeros((2, 16, 16), np.float32)
    v[1] = 1
    for _ in iter_diffusion(u, v, dt=0.2, steps=1):
        pass


def pack(model):
    """A picklable spec of a `UNetBackbone` (or `UNet3DBackbone`) or `LearnedRefiner`; None stays None.

    Examples
    --------
    >>> from napari_tubediff.models.refiner import LearnedRefiner
    >>> r = LearnedRefiner.shipped(2, device="cpu")
    >>> back = unpack(pack(r))
    >>> back.config == r.config and back.weights == r.weights
    True
    """
    if model is None:
        return None
    from ..models.refiner import LearnedRefiner

    if isinstance(model, LearnedRefiner):
        module, kind = model.module, "refiner"
    else:
        module, kind = model.net, type(model).__name__
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {"kind": kind, "config": dict(module.config), "state": state, "meta": dict(model.meta),
            "weights": str(model.weights), "polarity": getattr(model, "polarity", None)}


def unpack(spec):
    """The model `pack` described (on the CPU), made by its class's ``from_state``."""
    if spec is None:
        return None
    from ..models import backbones
    from ..models.refiner import LearnedRefiner

    if spec["kind"] == "refiner":
        return LearnedRefiner.from_state(spec["config"], spec["state"], spec["meta"], name=spec["weights"])
    cls = getattr(backbones, spec["kind"], None)
    if not (isinstance(cls, type) and issubclass(cls, backbones.UNetBackbone)):
        raise ValueError(f"not a U-Net backbone: {spec['kind']}")
    return cls.from_state(spec["config"], spec["state"], spec["meta"], name=spec["weights"],
                          polarity=spec["polarity"] or "auto")


def segment(name: str, image: np.ndarray, fov="auto", scale="auto", polarity: str = "auto", spacing=None,
            unet=None, **options):
    """``(Segmentation, polarity used)`` of `models.backbones.segment_image` with backbone
    ``name``; for ``"unet"`` the `pack` ed U-Net ``unet`` (the session's, maybe fine-tuned).
    ``options`` go to the backbone (e.g. ``vessel_fraction`` for vesselness)."""
    from ..models.backbones import segment_image
    from ..models.registry import get_backbone

    if name == "unet" and unet is not None:
        backbone = unpack(unet)
        backbone.polarity = polarity
    else:
        backbone = get_backbone(name, polarity=polarity, **options)
    seg = segment_image(backbone, image, scale=scale, fov=fov, spacing=spacing)
    return seg, getattr(backbone, "last_polarity", polarity)


def finetune(image, labels, region, fov, *, refiner, backbone, cfg, post=None):
    """`training.finetune.finetune` on one image, its models `pack` ed; each update
    ``(i, loss)`` goes to ``post``. The result's models come back packed."""
    from ..training.finetune import finetune as run

    on_update = None if post is None else (lambda i, loss: post((i, loss)))
    result = run([image], [labels], [region], fovs=[fov], refiner=unpack(refiner), backbone=unpack(backbone),
                 cfg=cfg, on_update=on_update)
    if result is not None:
        result.refiner = pack(result.refiner)
        result.backbone = pack(result.backbone)
    return result


def diffusion_frames(u, directions, settings, *, start: int = 0, steps: int | None = None, every: int = 1,
                     features=None, u0=None):
    """The Diffusion panel's run: the directions if not given, then the refinement's steps.

    Yields ``(step, field, directions, state)``: once and first ``(start, None, directions,
    None)`` when the directions are estimated (the learned head when ``features`` are
    given, else Hessian), then each frame of `core.refine.refine_steps` (every ``every``
    steps and the last) with its state. ``u`` is the state to start from (at step
    ``start``), ``u0`` the probability (default ``u``).
    """
    from ..core import refine
    from ..models.refiner import vessel_directions

    prob = u if u0 is None else u0
    if directions is None:
        directions, _ = vessel_directions(prob, features, sigma=settings.sigma,
                                          spacing=settings.relative_spacing(u.ndim))
        yield start, None, directions, None
    for r in refine.refine_steps(prob, directions, settings, state=u, start=start, steps=steps, every=every):
        yield r.step, r.field, None, r.state


def diffusion(u, directions, settings, *, refiner=None, post, **kwargs):
    """`diffusion_frames` with each frame handed to ``post``; ``refiner`` (`pack` ed, or None
    for the shipped one) is the refiner whose direction head the learned directions use."""
    from ..models import session

    ndim = np.ndim(u)
    if refiner is not None:
        session.set_refiner(unpack(refiner), source="parent")
    elif session.loaded_refiner(ndim) is not None:
        session.reset_refiner()
    for frame in diffusion_frames(u, directions, settings, **kwargs):
        post(frame)
