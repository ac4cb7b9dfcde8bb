"""The architectures a card can name, and the one builder that turns a card's entry into a network.

``smallcnn``, ``hybrid`` (:mod:`.cnn`), ``morph`` (:mod:`.morph`) and the published
backbones ``densenet121``, ``resnext50_32x4d``, ``efficientnet_b0`` from ``timm``
(optional extra ``pip install 'napari-nucleus-ai[backbones]'``, randomly initialised:
no weights can be downloaded here). Every builder takes ``(in_channels, n_classes,
**params)`` and returns a ``torch.nn.Module`` mapping ``(N, C, H, W)`` float tensors
to ``(N, n_classes)`` logits.

Cheap to import: the builders' modules (which import torch and define the network
classes :class:`~.cnn.SmallCNN`, :class:`~.cnn.Hybrid` and :class:`~.morph.Morph`) are
imported inside :func:`build_architecture` only.
"""

from __future__ import annotations

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.nets.morph_params import DEFAULTS as MORPH_DEFAULTS

__all__ = [
    "ARCHS",
    "DEFAULT_PARAMS",
    "LOCAL_ARCHS",
    "TIMM_ARCHS",
    "build_architecture",
    "build_timm",
]

TIMM_ARCHS = ("densenet121", "resnext50_32x4d", "efficientnet_b0")
LOCAL_ARCHS = ("smallcnn", "hybrid", "morph")
ARCHS = LOCAL_ARCHS + TIMM_ARCHS

DEFAULT_PARAMS = {
    "smallcnn": {"widths": [16, 32, 64, 128], "dropout": 0.3},
    "hybrid": {"widths": [16, 32, 64, 128], "dropout": 0.3},
    "morph": MORPH_DEFAULTS,
    "densenet121": {"dropout": 0.2},
    "resnext50_32x4d": {"dropout": 0.2},
    "efficientnet_b0": {"dropout": 0.2},
}


def _timm():
    try:
        import timm
    except ImportError as e:  # timm itself, or torchvision that timm imports, is missing
        raise InputError(
            None,
            "this architecture needs the optional 'backbones' extra (timm and a torchvision "
            "matching your torch): pip install 'napari-nucleus-ai[backbones]' "
            f"({' '.join(str(e).split())})",
        ) from None
    return timm


def build_timm(name: str, in_channels: int, n_classes: int, dropout=0.2):
    timm = _timm()
    return timm.create_model(
        name, pretrained=False, num_classes=n_classes, in_chans=in_channels, drop_rate=dropout
    )


def build_architecture(arch: str, in_channels: int, n_classes: int, params: dict | None = None):
    """Build ``arch`` with ``params`` (unknown parameter names are refused)."""
    params = dict(params or {})
    if arch not in ARCHS:
        raise InputError(None, f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    allowed = set(DEFAULT_PARAMS[arch])
    extra = set(params) - allowed
    if extra:
        raise InputError(
            None, f"architecture {arch!r} has no parameter(s) {', '.join(sorted(extra))}"
        )
    merged = {**DEFAULT_PARAMS[arch], **params}
    if arch in ("smallcnn", "hybrid"):
        from napari_nucleus_ai.models.nets.cnn import build_hybrid, build_smallcnn

    if arch == "smallcnn":
        return build_smallcnn(in_channels, n_classes, **merged)
    if arch == "hybrid":
        return build_hybrid(in_channels, n_classes, **merged)
    if arch == "morph":
        from napari_nucleus_ai.models.nets.morph import build_morph

        return build_morph(in_channels, n_classes, **merged)
    return build_timm(arch, in_channels, n_classes, **merged)
