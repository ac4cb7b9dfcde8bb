"""The exported module: :class:`NucleusAIClassifier` (ensemble, test-time transforms, softmax).

Imports torch at its top; only :func:`.network.ensemble` imports it (inside the function),
so :mod:`napari_nucleus_ai.models.bioimageio` stays cheap to import.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# the order in which tta = 1, 2, 4, 8 adds dihedral transforms: the package's own
from napari_nucleus_ai.models.engine import _DIHEDRAL as DIHEDRAL

__all__ = ["NucleusAIClassifier", "normalised_entropy"]


def normalised_entropy(p):
    """Entropy of probabilities ``(N, C)`` over ``log C``, in float64: the torch form of
    :func:`napari_nucleus_ai.models.engine.normalised_entropy`, traceable."""
    c = p.shape[-1]
    q = p.double().clamp(1e-12, 1.0)
    return -(q * q.log()).sum(-1) / (math.log(c) if c > 1 else 1.0)


class NucleusAIClassifier(nn.Module):
    """The mean calibrated softmax of ensemble members over dihedral test-time transforms.

    ``forward(x)`` maps ``(N, C, H, W)`` normalised crops to ``(N, n_classes)``
    probabilities: the mean over ``nets`` and the first ``tta`` transforms of
    :data:`DIHEDRAL` of ``softmax(net(transform(x)) / temperature)``, as the package
    predicts (without MC dropout). With ``adaptive`` (the card's adaptive test-time
    views), a crop whose first view's normalised entropy is at most ``adaptive`` keeps
    the first view's probabilities, as the package's ``predict`` does. Traceable to
    TorchScript when the members are.

    Parameters
    ----------
    nets : list of torch.nn.Module
        The ensemble members, each mapping ``(N, C, H, W)`` to ``(N, n_classes)`` logits.
    temperature : float
        The calibration temperature the logits are divided by.
    tta : int
        How many dihedral transforms of :data:`DIHEDRAL` to average over (clipped to 1..8).
    adaptive : float or None
        The entropy above which a crop gets the other views; None: every crop gets them.

    Attributes
    ----------
    members : torch.nn.ModuleList
        The ensemble members; the state dict keys are ``members.<i>.<name>``.
    temperature : float
    transforms : tuple of (int, bool)
        The ``(quarter turns, flip)`` transforms averaged over.
    adaptive : float or None
    """

    def __init__(self, nets: list, temperature: float, tta: int, adaptive: float | None = None):
        super().__init__()
        self.members = nn.ModuleList(nets)
        self.temperature = float(temperature)
        self.transforms = DIHEDRAL[: max(1, min(int(tta), len(DIHEDRAL)))]
        self.adaptive = None if adaptive is None else float(adaptive)
        for net in nets:  # morph: one descriptor per crop for all its views, as predict does
            if hasattr(net, "shared_views"):
                net.shared_views = self.adaptive is not None

    def _mean(self, x, transforms):
        total = None
        for net in self.members:
            for k, flip in transforms:
                t = torch.flip(x, dims=(-1,)) if flip else x
                if k:
                    t = torch.rot90(t, k, dims=(-2, -1))
                p = torch.softmax(net(t) / self.temperature, dim=1)
                total = p if total is None else total + p
        return total / float(len(self.members) * len(transforms))

    def forward(self, x):
        if self.adaptive is None or len(self.transforms) == 1:
            return self._mean(x, self.transforms)
        first = self._mean(x, self.transforms[:1])
        rest = self._mean(x, self.transforms[1:])
        n = len(self.transforms)
        every = (first + (n - 1) * rest) / float(n)
        unsure = (normalised_entropy(first) > self.adaptive)[:, None]
        return torch.where(unsure, every, first)
