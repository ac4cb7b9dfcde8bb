"""Compute-device selection shared by every model user.

``auto`` picks CUDA, then Apple MPS, then the CPU. An explicit choice that this
machine does not have raises :class:`~napari_nucleus_ai.core.errors.DeviceError`
with a message that says what is available. torch is imported only when a
device is actually needed.
"""

from __future__ import annotations

import logging

from napari_nucleus_ai.core.errors import DeviceError

log = logging.getLogger(__name__)

CHOICES = ("auto", "cuda", "mps", "cpu")


def _torch():
    import torch

    return torch


def _mps_available(torch) -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Devices this machine can run on, best first (always ends with ``"cpu"``)."""
    torch = _torch()
    found = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda"]
    if _mps_available(torch):
        found.append("mps")
    found.append("cpu")
    return found


def select_device(choice: str | None = None):
    """Return the ``torch.device`` for ``choice``.

    Parameters
    ----------
    choice : {"auto", "cuda", "cuda:N", "mps", "cpu"} or None
        ``None`` means the plugin setting (default ``"auto"``).

    Raises
    ------
    DeviceError
        When the requested device is not available here.
    """
    torch = _torch()
    if choice is None:
        from napari_nucleus_ai.core.settings import get_setting

        choice = get_setting("device") or "auto"
    choice = str(choice).strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {choice!r} was requested but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                f"available: {', '.join(available_devices())}"
            )
        index = choice.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(
                f"device {choice!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device(choice)
    if choice == "mps":
        if not _mps_available(torch):
            raise DeviceError(
                "device 'mps' was requested but Apple MPS is not available; "
                f"available: {', '.join(available_devices())}"
            )
        return torch.device("mps")
    raise DeviceError(f"unknown device {choice!r}; choose one of {', '.join(CHOICES)} or cuda:N")


def describe_device(device) -> str:
    """A short human description, e.g. ``"cuda:0 (NVIDIA A100)"`` or ``"cpu (2 threads)"``."""
    torch = _torch()
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_device(choice: str | None, notes: list | None = None):
    """``select_device(choice)``, falling back to the CPU with a note instead of failing."""
    import torch

    from napari_nucleus_ai.core.device import select_device

    try:
        return select_device(choice)
    except DeviceError as e:
        msg = f"{e}; using the CPU instead"
        log.warning(msg)
        if notes is not None:
            notes.append(msg)
        return torch.device("cpu")
