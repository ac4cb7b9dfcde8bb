"""The exported network: ensemble members, test-time transforms, temperature and softmax.

:func:`bioimageio_classifier` is the ``pytorch_state_dict`` architecture of exported
packages; :func:`ensemble` wraps modules already built (the package's) the same way, for
tracing. Both return a :class:`~.wrapper.NucleusAIClassifier` (also importable from here,
lazily): torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

# the order in which tta = 1, 2, 4, 8 adds dihedral transforms: the package's own
from napari_nucleus_ai.models.engine import _DIHEDRAL as DIHEDRAL

__all__ = ["DIHEDRAL", "bioimageio_classifier", "ensemble"]


def __getattr__(name: str):
    """:class:`~.wrapper.NucleusAIClassifier`, imported (with torch) on first use."""
    if name == "NucleusAIClassifier":
        from napari_nucleus_ai.models.bioimageio.wrapper import NucleusAIClassifier

        return NucleusAIClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def bioimageio_classifier(
    architecture: str,
    channels: int,
    n_classes: int,
    params: dict | None = None,
    members: int = 1,
    temperature: float = 1.0,
    tta: int = 1,
):
    """The exported network: ``(N, C, H, W)`` normalised crops -> ``(N, n_classes)`` probabilities.

    The mean over ``members`` networks of ``architecture`` and ``tta`` dihedral transforms
    of the softmax of the logits divided by ``temperature``, as the package predicts
    (without MC dropout). This is the ``pytorch_state_dict`` architecture of exported
    packages (``from napari_nucleus_ai.models.bioimageio import bioimageio_classifier``).
    """
    from napari_nucleus_ai.models.nets.registry import build_architecture

    nets = [
        build_architecture(architecture, int(channels), int(n_classes), params)
        for _ in range(int(members))
    ]
    return ensemble(nets, float(temperature), int(tta))


def ensemble(nets: list, temperature: float, tta: int):
    """One ``nn.Module`` averaging the calibrated softmax of ``nets`` over ``tta`` transforms.

    Parameters
    ----------
    nets : list of torch.nn.Module
        The ensemble members, each mapping ``(N, C, H, W)`` to ``(N, n_classes)`` logits.
    temperature : float
        The calibration temperature the logits are divided by.
    tta : int
        How many dihedral transforms of :data:`DIHEDRAL` to average over (clipped to 1..8).

    Returns
    -------
    NucleusAIClassifier
        The wrapper, in eval mode; its state dict keys are ``members.<i>.<name>``.
    """
    from napari_nucleus_ai.models.bioimageio.wrapper import NucleusAIClassifier

    return NucleusAIClassifier(nets, temperature, tta).eval()
