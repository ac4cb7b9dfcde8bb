"""Optional deep-learning segmenters: Cellpose, StarDist, InstanSeg -- local weights only.

None of these is a dependency. When a user has one installed, it runs with
weights from a local path; nothing is ever downloaded at run time (all three
fetch weights from the internet by default, which fails offline and behind
firewalls). Where the package or the weights are missing, the error says
exactly what to install or where to put the file.

Weights are found from, in order: the ``model`` parameter (a file or folder),
then an environment variable:

============  ===============================  ==========================================
backend       install                           weights
============  ===============================  ==========================================
cellpose      ``pip install cellpose``          a model file, or ``CELLPOSE_LOCAL_MODELS_PATH``
                                                holding ``cpsam`` (Cellpose 4)
stardist      ``pip install stardist``          a model folder (``config.json`` +
              (needs TensorFlow)                ``weights_best.h5``), or ``STARDIST_MODEL_DIR``
instanseg     ``pip install instanseg-torch``   a TorchScript ``.pt`` file, or
                                                ``INSTANSEG_MODEL_PATH``
============  ===============================  ==========================================
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError, NucleusAIError

BACKENDS = {
    "cellpose": ("cellpose", "pip install cellpose", "CELLPOSE_LOCAL_MODELS_PATH"),
    "stardist": ("stardist", "pip install stardist tensorflow", "STARDIST_MODEL_DIR"),
    "instanseg": ("instanseg", "pip install instanseg-torch", "INSTANSEG_MODEL_PATH"),
}


class BackendUnavailable(NucleusAIError):
    """A deep backend is not installed or has no local weights."""


def available(backend: str) -> bool:
    """True when the backend's package is importable (weights are checked at run time)."""
    mod = BACKENDS[backend][0]
    return importlib.util.find_spec(mod) is not None


def status() -> dict[str, str]:
    """One line per backend: installed or not, and where weights would come from."""
    out = {}
    for name, (_, how, env) in BACKENDS.items():
        if not available(name):
            out[name] = f"not installed ({how})"
        else:
            where = os.environ.get(env)
            out[name] = (
                f"installed; weights from {where}"
                if where
                else f"installed; set {env} or choose a model file"
            )
    return out


def _weights(backend: str, model) -> Path:
    _, how, env = BACKENDS[backend]
    candidate = model or os.environ.get(env)
    if not candidate:
        raise BackendUnavailable(
            f"{backend}: no local weights; pass a model file/folder or set {env} "
            "(weights are never downloaded at run time)"
        )
    path = Path(candidate).expanduser()
    if backend == "cellpose" and path.is_dir():
        for name in ("cpsam", "cpsam.pth"):
            if (path / name).exists():
                return path / name
        raise BackendUnavailable(f"cellpose: no 'cpsam' weights in {path}")
    if not path.exists():
        raise BackendUnavailable(f"{backend}: weights not found at {path}")
    return path


def _require(backend: str):
    mod, how, _ = BACKENDS[backend]
    if not available(backend):
        raise BackendUnavailable(f"{backend} is not installed; to use it: {how}")
    return importlib.import_module(mod)


def segment_deep(
    image,
    backend: str,
    pixel_size_um: float | None = None,
    *,
    model: str | os.PathLike | None = None,
    diameter_um: float | None = None,
    **kwargs,
) -> np.ndarray:
    """Segment with a deep backend and local weights; returns int32 labels of the image's (Y, X).

    Parameters
    ----------
    image : (Y, X) or (Y, X, 3) array
    backend : {"cellpose", "stardist", "instanseg"}
    pixel_size_um : float, optional
        Used to turn ``diameter_um`` into pixels (Cellpose) and as InstanSeg's pixel size.
    model : path, optional
        Weights file or folder (else the backend's environment variable).
    diameter_um : float, optional
        Expected object diameter (Cellpose).
    """
    if backend not in BACKENDS:
        raise InputError(
            None, f"unknown deep backend {backend!r}; use one of {', '.join(BACKENDS)}"
        )
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or 0 in arr.shape:
        raise InputError(None, f"{backend} needs a 2D grey or RGB image, got shape {arr.shape}")
    lib = _require(backend)
    weights = _weights(backend, model)
    if backend == "cellpose":
        labels = _cellpose(lib, arr, weights, pixel_size_um, diameter_um, kwargs)
    elif backend == "stardist":
        labels = _stardist(arr, weights, kwargs)
    else:
        labels = _instanseg(lib, arr, weights, pixel_size_um, kwargs)
    labels = np.asarray(labels)
    if labels.shape != arr.shape[:2]:
        raise NucleusAIError(
            f"{backend} returned labels of shape {labels.shape} for an image of {arr.shape[:2]}"
        )
    return labels.astype(np.int32, copy=False)


def _cellpose(lib, arr, weights, px, diameter_um, kwargs):
    from cellpose import models  # noqa: F401 - imported for its side effects in old versions

    from napari_nucleus_ai.core.device import select_device

    device = select_device()
    m = lib.models.CellposeModel(
        pretrained_model=str(weights), device=device, gpu=device.type != "cpu"
    )
    diameter = diameter_um / px if (diameter_um and px) else None
    out = m.eval(arr[..., :3] if arr.ndim == 3 else arr, diameter=diameter, **kwargs)
    return out[0]


def _stardist(arr, weights, kwargs):
    from csbdeep.utils import normalize
    from stardist.models import StarDist2D

    m = StarDist2D(None, name=weights.name, basedir=str(weights.parent))
    img = arr[..., :3] if arr.ndim == 3 else arr
    axis = (0, 1, 2) if img.ndim == 3 else (0, 1)
    labels, _ = m.predict_instances(normalize(img, 1, 99.8, axis=axis), **kwargs)
    return labels


def _instanseg(lib, arr, weights, px, kwargs):
    import torch

    model = torch.jit.load(str(weights), map_location="cpu")
    seg = lib.InstanSeg(model, verbosity=0)
    img = arr[..., :3] if arr.ndim == 3 else arr
    labels, _ = seg.eval_small_image(img, pixel_size=px, **kwargs)
    lab = np.asarray(labels.cpu().numpy() if hasattr(labels, "cpu") else labels)
    return lab.reshape(lab.shape[-2:]) if lab.ndim > 2 else lab
