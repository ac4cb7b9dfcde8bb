"""The range of every numeric command line option, checked by :func:`cli.main` before ``run``.

One :class:`~napari_nucleus_ai.core.params.Param` per option (its ``key`` is the
argparse ``dest``); options a command does not have are not checked. A bad value
is one line naming the option, the value and what is allowed, with exit status 2
(argparse already refuses values of the wrong type, also with 2).
"""

from __future__ import annotations

from napari_nucleus_ai.core.params import Param

TTA = (1, 2, 4, 8)
_POS = {"low": 0.0, "low_open": True}

_INFERENCE = (
    Param("--batch-size", int, 1, 100_000),
    Param("--tta", int, choices=TTA, optional=True),
    Param("--mc-dropout", int, 0, 1000, optional=True),
    Param("--threshold", float, 0, 1, optional=True),
)

_PIXEL = (
    Param("--pixel-size-um", float, high=1e4, optional=True, unit="um", **_POS),
    Param("--pixel-size-nm", float, high=1e7, optional=True, unit="nm", **_POS),
    Param("--camera-pixel", float, high=1e7, optional=True, unit="nm", **_POS),
)

_TRAINING = (
    Param("--epochs", int, 1, 100_000),
    Param("--patience", int, 1, 100_000),
    Param("--batch-size", int, 1, 100_000),
    Param("--lr", float, high=10, **_POS),
    Param("--val-fraction", float, 0, 1, high_open=True),
    Param("--holdout", float, 0, 1, high_open=True),
    Param("--seed", int, 0, 2**32 - 1),
    Param("--threads", int, 1, 4096, optional=True),
    Param("--crop-size", int, 8, 4096, optional=True, unit="px"),
    Param("--pixel-size", float, high=1e7, optional=True, **_POS),
    Param("--members", int, 1, 100),
    Param("--tta", int, choices=TTA),
    Param("--threshold", float, 0, 1),
    Param("--render-pixel-nm", float, high=20, unit="nm", **_POS),
    Param("--patches", int, 1, 10_000),
)

SCHEMAS: dict[str, tuple[Param, ...]] = {
    "info": _PIXEL,
    "render": (
        *_PIXEL,
        Param("--pixel-size", float, high=1e6, unit="nm", **_POS),
        Param("--sigma", float, high=1e6, optional=True, unit="nm", **_POS),
        Param("--z-pixel-size", float, high=1e6, optional=True, unit="nm", **_POS),
        Param("--max-precision", float, optional=True, unit="nm", **_POS),
        Param("--min-photons", float, 0, optional=True),
        Param("--drift-segments", int, 0, 10_000),
    ),
    "measure": (
        *_PIXEL,
        Param("--radius", float, high=1e6, unit="nm", **_POS),
        Param("--dark", int, 0, 10_000),
        Param("--frc-pixel", float, high=1e5, unit="nm", **_POS),
        Param("--frc-splits", int, 1, 1000),
        Param("--eps", float, high=1e6, unit="nm", **_POS),
        Param("--min", int, 1, 1_000_000, key="min_samples"),
    ),
    "segment": (*_PIXEL, Param("--tile", int, 64, 1_000_000, optional=True, unit="px")),
    "batch": (
        *_PIXEL,
        *_INFERENCE,
        Param("--workers", int, 1, 1024, optional=True),
        Param("--tile", int, 64, 1_000_000, optional=True, unit="px"),
        Param("--tile-above", int, 1, optional=True, unit="pixels"),
    ),
    "import-dataset": (Param("--size", int, 8, 8192, optional=True, unit="px"),),
    "train": (*_PIXEL, *_TRAINING),
    "retrain": _TRAINING,
    "predict": (*_PIXEL, *_INFERENCE),
    "classify": (
        *_PIXEL,
        *_INFERENCE,
        Param("--pixel-size", float, high=1e7, optional=True, **_POS),
    ),
    "generate": (
        Param("-n", int, 1, 100_000, key="n"),
        Param("--steps", int, 1, 10_000),
        Param("--seed", int, 0, 2**32 - 1),
    ),
    "export-trainset": (Param("--window", float, optional=True, **_POS),),
    "export-bioimageio": (Param("--tta", int, choices=TTA, optional=True),),
    "track": (
        *_PIXEL,
        Param("--frame-interval-h", float, high=1e4, optional=True, unit="h", **_POS),
        Param("--channel", int, 0, 1024),
        Param("--max-step-um", float, high=1e4, unit="um", **_POS),
        Param("--split-distance-um", float, 0, 1e4, unit="um"),
        Param("--max-gap", int, 0, 1000),
        Param("--batch-size", int, 1, 100_000),
    ),
}


def check_args(command: str, args) -> None:
    """Raise :class:`~napari_nucleus_ai.core.errors.UsageError` for an option out of its range."""
    from napari_nucleus_ai.core.params import validate

    schema = SCHEMAS.get(command)
    if not schema:
        return
    values = vars(args)
    present = [p for p in schema if p.dest in values]
    checked = validate(present, {p.dest: values[p.dest] for p in present}, command)
    for key, value in checked.items():
        setattr(args, key, value)
