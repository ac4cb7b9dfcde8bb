"""Start training from weights in a local file (e.g. ImageNet weights of a timm backbone).

Nothing is downloaded: a lab that has a backbone's pretrained weights (a ``.safetensors``
file, or a PyTorch ``.pth``/``.pt``/``.bin`` state dict, read with ``weights_only=True`` so
that no code in the file can run) passes its path as ``train(..., init_weights=PATH)`` or
``napari-nucleus-ai train --init-weights PATH``. Every tensor whose name and shape match the
network is copied; the classifier head (another number of classes) is left as initialised;
a first convolution with another number of input channels (grey or STORM renders from RGB
weights) is adapted by averaging over the file's channels, as timm does. A file that fits
less than half of the network is refused, naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError

PREFIXES = ("module.", "model.", "m0.")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_state_dict(path) -> dict:
    """The tensors of ``path`` by name (safetensors, or a torch state dict without pickled code)."""
    import torch

    path = Path(os.fspath(path))
    if not path.is_file():
        raise InputError(path, "no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - every unreadable file gets the same one line
        why = " ".join(str(e).split())[:160]
        raise InputError(
            path, f"not a readable weights file (safetensors or state dict): {why}"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):  # training checkpoints
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise InputError(path, "holds no named tensors (expected a state dict of a network)")
    for prefix in PREFIXES:  # DataParallel / wrapper / our own ensemble-member prefixes
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _adapt_input_conv(w, in_channels: int):
    """RGB conv weights ``(out, 3, k, k)`` for ``in_channels`` inputs (channel mean, rescaled)."""
    mean = w.float().mean(1, keepdim=True)
    return (mean.repeat(1, in_channels, 1, 1) * (w.shape[1] / in_channels)).to(w.dtype)


def load_init_weights(module, path) -> dict:
    """Copy the matching tensors of ``path`` into ``module``; returns what was done.

    Returns
    -------
    dict
        ``file`` (name), ``sha256`` (first 16 hex digits), ``loaded``, ``adapted`` and
        ``skipped`` tensor counts, for the card's provenance.
    """
    import torch

    path = Path(os.fspath(path))
    sd = read_state_dict(path)
    own = module.state_dict()
    take, adapted, skipped = {}, 0, 0
    for k, v in sd.items():
        target = own.get(k)
        if target is None:
            skipped += 1
        elif target.shape == v.shape:
            take[k] = v.to(target.dtype)
        elif (
            v.ndim == 4
            and target.ndim == 4
            and target.shape[0] == v.shape[0]
            and target.shape[2:] == v.shape[2:]
        ):
            take[k] = _adapt_input_conv(v, target.shape[1]).to(target.dtype)
            adapted += 1
        else:  # e.g. the classifier head for another number of classes
            skipped += 1
    n_params = sum(1 for k, v in own.items() if torch.is_floating_point(v))
    n_taken = sum(1 for k in take if torch.is_floating_point(own[k]))
    if n_taken < 0.5 * n_params:
        raise InputError(
            path,
            f"only {n_taken} of the network's {n_params} weight tensors match this file "
            "(is it a checkpoint of the same architecture?)",
        )
    with torch.no_grad():
        for k, v in take.items():
            own[k].copy_(v)
    return {
        "file": path.name,
        "sha256": _digest(path),
        "loaded": len(take),
        "adapted": adapted,
        "skipped": skipped,
    }
