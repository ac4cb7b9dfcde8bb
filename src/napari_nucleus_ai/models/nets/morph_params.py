"""The ``morph`` architecture's parameters: :data:`DEFAULTS` and :func:`resolve_params`.

Cheap to import (no torch): the registry (:mod:`.registry`) reads the defaults from here
at import time, while the network itself (:class:`~.morph.Morph`, which imports torch)
is only imported by its builder.
"""

from __future__ import annotations

__all__ = ["DEFAULTS", "Z_CLIP", "resolve_params"]

DEFAULTS = {
    "cnn": True,
    "cnn_size": 64,
    "widths": [16, 32, 64, 128],
    "dropout": 0.3,
    "c_grid": [0.03, 0.1, 0.3, 1.0],
    "inner_folds": 4,
    # frozen ImageNet features (models/imagenet.py): a backbone name or None; ``train``
    # turns the absent key into "efficientnet-lite0" where the [pretrained] extra is installed
    "imagenet": None,
    "imagenet_view": 1 / 1.4,
    "imagenet_c_grid": [0.01, 0.03, 0.1, 0.3, 1.0],
    # standardised features are clipped to +-z_clip before the heads (None: not clipped);
    # ``train`` gives new canonical-frame models (a package's fallback) :data:`Z_CLIP`
    "z_clip": None,
}

#: The bound ``train`` gives the standardised features of new canonical-frame models, the
#: models for cells of other microscopes. A feature that hardly varies on the training
#: crops (a high optical-density bin no training cell reaches) has a standard deviation
#: near its floor, so a cell of another microscope can give it z-scores in the hundreds,
#: which then outweigh every other feature in the logits.
Z_CLIP = 5.0


def resolve_params(params) -> tuple[dict, str | None]:
    """``params`` with ``imagenet`` (and with it ``cnn``) filled in when absent, and a note.

    The absent ``imagenet`` becomes ``"efficientnet-lite0"`` where the ``[pretrained]`` extra
    is installed and ``None`` (morphology only) elsewhere, so the card always says which.
    With ImageNet features the small CNN is off unless asked for: on PBC it added no
    accuracy beside them and took 5x the training time, and saliency maps come through the
    backbone instead.
    """
    from napari_nucleus_ai.models.nets.imagenet import EXTRA, available

    params = dict(params or {})
    if "imagenet" not in params:
        params["imagenet"] = "efficientnet-lite0" if available() else None
        if params["imagenet"] is None:
            return params, f"ImageNet features: not installed, morphology only ({EXTRA})"
    if params["imagenet"] is None:
        return params, None
    params.setdefault("cnn", False)
    return params, f"ImageNet features: {params['imagenet']} (frozen), beside the morphology"
