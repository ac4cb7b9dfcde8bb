"""The exported module: :class:`NucleusAIClassifier` (ensemble, test-time transforms, softmax).

Imports torch at its top; only :func:`.network.ensemble` imports it (inside the function),
so :mod:`napari_nucleus_ai.models.bioimageio` stays cheap to import.
"""

from __future__ import annotations

import torch
from torch import nn

# the order in which tta = 1, 2, 4, 8 adds dihedral transforms: the package's own
from napari_nucleus_ai.models.engine import _DIHEDRAL as DIHEDRAL

__all__ = ["NucleusAIClassifier"]


class NucleusAIClassifier(nn.Module):
    """The mean calibrated softmax of ensemble members over dihedral test-time transforms.

    ``forward(x)`` maps ``(N, C, H, W)`` normalised crops to ``(N, n_classes)``
    probabilities: the mean over ``nets`` and the first ``tta`` transforms of
    :data:`DIHEDRAL` of ``softmax(net(transform(x)) / temperature)``, as the package
    predicts (without MC dropout). Traceable to TorchScript.

    Parameters
    ----------
    nets : list of torch.nn.Module
        The ensemble members, each mapping ``(N, C, H, W)`` to ``(N, n_classes)`` logits.
    temperature : float
        The calibration temperature the logits are divided by.
    tta : int
        How many dihedral transforms of :data:`DIHEDRAL` to average over (clipped to 1..8).

    Attributes
    ----------
    members : torch.nn.ModuleList
        The ensemble members; the state dict keys are ``members.<i>.<name>``.
    temperature : float
    transforms : tuple of (int, bool)
        The ``(quarter turns, flip)`` transforms averaged over.
    """

    def __init__(self, nets: list, temperature: float, tta: int):
        super().__init__()
        self.members = nn.ModuleList(nets)
        self.temperature = float(temperature)
        self.transforms = DIHEDRAL[: max(1, min(int(tta), len(DIHEDRAL)))]

    def forward(self, x):
        total = None
        for net in self.members:
            for k, flip in self.transforms:
                t = torch.flip(x, dims=(-1,)) if flip else x
                if k:
                    t = torch.rot90(t, k, dims=(-2, -1))
                p = torch.softmax(net(t) / self.temperature, dim=1)
                total = p if total is None else total + p
        return total / float(len(self.members) * len(self.transforms))
