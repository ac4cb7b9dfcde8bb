"""Model kinds: what a package's ``card["kind"]`` means, without importing every kind.

A *kind* is a family of models that share a way to be built from a card, trained
and asked for predictions. The built-in kind is ``"classifier"`` (discriminative
CNNs, :mod:`napari_nucleus_ai.models.classifier_kind`). Other capabilities add
their own kind by

1. writing a module that calls :func:`register_kind` at import time, and
2. adding one line ``"<kind>": "<module path>"`` to :data:`KIND_MODULES`.

Then ``napari-nucleus-ai train DATA --arch <one of the kind's archs>`` trains it
and :func:`napari_nucleus_ai.models.package.load_model` loads packages whose card
says ``"kind": "<kind>"``, without this package knowing anything about it.

A kind supplies four plain functions (torch is imported by them, never here):

``build(card) -> list[torch.nn.Module]``
    Modules for the card's architecture (one per ensemble member), with freshly
    initialised parameters; the package loader then fills them from the
    safetensors weights with ``load_state_dict(strict=True)``. Raise
    :class:`~napari_nucleus_ai.core.errors.InputError` for a card it cannot build.
``validate(card) -> None``
    Kind-specific card checks (architecture name, hyper-parameters); raise
    ``InputError(None, "...")`` with a one-line reason.
``fit(trainset, card, options) -> generator``
    Training: yields :class:`~napari_nucleus_ai.core.progress.Progress` (or its subclass
    :class:`~napari_nucleus_ai.classify.train.TrainProgress`) and returns
    ``(modules, card)`` - trained modules and the completed card (calibration,
    metrics). :func:`napari_nucleus_ai.classify.train.train_gen` prepares ``trainset`` (a
    :class:`~napari_nucleus_ai.classify.trainset.TrainingSet`) and the starting ``card`` and
    saves the result.
``predict(package, batch, options) -> numpy.ndarray``
    Per-sample probability *samples* of shape ``(S, N, C)``: ``S`` stochastic or
    member passes (ensemble members, test-time augmentation, MC dropout; ``S=1``
    when the kind has none) over ``N`` prepared inputs (a float tensor
    ``(N, C, H, W)``), already calibrated. :mod:`napari_nucleus_ai.models.uncertainty`
    turns them into the class, entropy, disagreement and ``unidentified``.

Optionally, a kind whose ``predict`` honours ``options["skip"]`` (a boolean mask of inputs
that get no pass; their samples are placeholders the caller replaces) says so with
``skips_inputs=True`` and may give ``ready(package)``, which sets its modules up as
``predict`` would before anything else measures them (a package's router measures the
first model's features before its ``predict``: :func:`~napari_nucleus_ai.classify.predict.route`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from napari_nucleus_ai.core.errors import InputError

# kind name -> module that registers it when imported (add one line per kind).
KIND_MODULES: dict[str, str] = {
    "classifier": "napari_nucleus_ai.models.classifier_kind",
    "diffusion": "napari_nucleus_ai.models.diffusion.kind",
}


@dataclass(frozen=True)
class Kind:
    """One model kind (see the module docstring for the four functions)."""

    name: str
    archs: tuple[str, ...]
    build: Callable
    fit: Callable
    predict: Callable
    validate: Callable = field(default=lambda card: None)
    description: str = ""
    skips_inputs: bool = False
    ready: Callable = field(default=lambda package: None)


_REGISTRY: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Make ``kind`` available by name (call at import time of the kind's module)."""
    _REGISTRY[kind.name] = kind
    return kind


def _load_all() -> None:
    for name, module in KIND_MODULES.items():
        if name not in _REGISTRY:
            try:
                importlib.import_module(module)
            except ImportError:  # a kind whose module is missing is simply unavailable
                continue


def get_kind(name: str, path=None) -> Kind:
    """The registered kind ``name``; one-line :class:`InputError` when unknown."""
    if name not in _REGISTRY and name in KIND_MODULES:
        importlib.import_module(KIND_MODULES[name])
    if name not in _REGISTRY:
        _load_all()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise InputError(path, f"unknown model kind {name!r} (this version knows: {known})")
    return _REGISTRY[name]


def kind_for_arch(arch: str) -> Kind:
    """The kind that trains architecture ``arch`` (e.g. ``smallcnn`` -> classifier)."""
    _load_all()
    for kind in _REGISTRY.values():
        if arch in kind.archs:
            return kind
    raise InputError(None, f"unknown architecture {arch!r}; choose one of {', '.join(all_archs())}")


def all_archs() -> list[str]:
    """Every architecture name any registered kind can train."""
    _load_all()
    return [a for kind in _REGISTRY.values() for a in kind.archs]


def all_kinds() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)
