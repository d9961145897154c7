"""The panels' heavy work as functions a child process runs (`workers.process.run_in_child`).

Each is the CLI's own core call (`models.backbones.segment_image`,
`training.finetune.finetune`) with its models sent as plain data: a U-Net holds a
function that does not pickle (``F.max_pool2d``), so models travel as `pack` ed specs
(class, config, weights as a state dict, metadata) and are rebuilt on the other side with
`unpack`. No napari, no Qt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
    """The model `pack` described (on the CPU)."""
    if spec is None:
        return None
    import torch

    from ..models import backbones
    from ..models.refiner import LearnedRefiner, Refiner
    from ..models.unet import UNet

    if spec["kind"] == "refiner":
        module = Refiner(**spec["config"])
        cls = LearnedRefiner
    else:
        module = UNet(**spec["config"])
        cls = getattr(backbones, spec["kind"])
        if not (isinstance(cls, type) and issubclass(cls, backbones.UNetBackbone)):
            raise ValueError(f"not a U-Net backbone: {spec['kind']}")
    module.load_state_dict(spec["state"])
    model = cls.__new__(cls)
    model.device = torch.device("cpu")
    if spec["kind"] == "refiner":
        model.module = module.eval()
    else:
        model.net = module.eval()
        model.polarity = spec["polarity"] or "auto"
    model.weights = Path(spec["weights"])
    model.meta = dict(spec["meta"])
    return model


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
