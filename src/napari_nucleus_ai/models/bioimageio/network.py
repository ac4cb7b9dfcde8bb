"""The exported network: ensemble members, test-time transforms, temperature and softmax.

:func:`bioimageio_classifier` is the ``pytorch_state_dict`` architecture of exported
packages; :func:`ensemble` wraps modules already built (the package's) the same way, for
tracing. Both return a :class:`~.wrapper.NucleusAIClassifier` (also importable from here,
lazily): torch is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

# the order in which tta = 1, 2, 4, 8 adds dihedral transforms: the package's own
from napari_nucleus_ai.models.engine import _DIHEDRAL as DIHEDRAL

__all__ = ["DIHEDRAL", "architecture_kwargs", "bioimageio_classifier", "ensemble"]


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
    adaptive: float | None = None,
):
    """The exported network: ``(N, C, H, W)`` normalised crops -> ``(N, n_classes)`` probabilities.

    The mean over ``members`` networks of ``architecture`` and ``tta`` dihedral transforms
    of the softmax of the logits divided by ``temperature``, as the package predicts
    (without MC dropout); with ``adaptive``, only crops whose first view's normalised
    entropy is above it get the other views. This is the ``pytorch_state_dict``
    architecture of exported packages (``from napari_nucleus_ai.models.bioimageio import
    bioimageio_classifier``), ``morph`` included: its ``forward`` measures the numpy
    morphology descriptor, so it runs where ``napari-nucleus-ai`` is installed.
    """
    from napari_nucleus_ai.models.nets.registry import build_architecture

    nets = [
        build_architecture(architecture, int(channels), int(n_classes), params)
        for _ in range(int(members))
    ]
    return ensemble(nets, float(temperature), int(tta), adaptive)


def architecture_kwargs(package, tta: int) -> dict:
    """The keyword arguments of :func:`bioimageio_classifier` that rebuild ``package``'s network.

    Parameters
    ----------
    package : ModelPackage
        The classifier package being exported.
    tta : int
        Test-time transforms inside the exported network.

    Returns
    -------
    dict
        ``architecture``, ``channels``, ``n_classes``, ``params``, ``members``,
        ``temperature``, ``tta``, and ``adaptive`` when the card's test-time views are
        adaptive.
    """
    from napari_nucleus_ai.models.classifier_kind import adaptive_gate

    card = package.card
    kwargs = {
        "architecture": card["architecture"]["name"],
        "channels": int(card["input"]["channels"]),
        "n_classes": len(package.classes),
        "params": dict(card["architecture"].get("params") or {}),
        "members": int(card["members"]),
        "temperature": float(package.temperature),
        "tta": int(tta),
    }
    gate = adaptive_gate(card)
    if gate is not None and tta > 1:
        kwargs["adaptive"] = float(gate)
    return kwargs


def ensemble(nets: list, temperature: float, tta: int, adaptive: float | None = None):
    """One ``nn.Module`` averaging the calibrated softmax of ``nets`` over ``tta`` transforms.

    Parameters
    ----------
    nets : list of torch.nn.Module
        The ensemble members, each mapping ``(N, C, H, W)`` to ``(N, n_classes)`` logits.
    temperature : float
        The calibration temperature the logits are divided by.
    tta : int
        How many dihedral transforms of :data:`DIHEDRAL` to average over (clipped to 1..8).
    adaptive : float or None
        The normalised entropy of the first view above which a crop gets the other views
        (the card's adaptive test-time views); None: every crop gets every view.

    Returns
    -------
    NucleusAIClassifier
        The wrapper, in eval mode; its state dict keys are ``members.<i>.<name>``.
    """
    from napari_nucleus_ai.models.bioimageio.wrapper import NucleusAIClassifier

    return NucleusAIClassifier(nets, temperature, tta, adaptive).eval()
