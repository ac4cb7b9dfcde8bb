"""Parameter schemas and input bounds, checked before any work starts.

Every segmentation method and every command line option with a range declares a
:class:`Param` (type, finiteness, range, choices, unit). :func:`validate` checks a
dict of values against such a schema and raises :class:`~.errors.UsageError` with
one line naming the option, the value and what is allowed; the command line exits
with status 2 for it, as argparse does. The docks take their spin boxes' limits
and steps from the same objects (:func:`widget_options`): a command line option's
schema is in :data:`COMMANDS` (read by ``cli/_params.py`` and by the docks), a
segmentation method's is the ``SCHEMA`` of its module (``segment/wbc.py``...).

The bounds on inputs live here too: :data:`MAX_COORD_NM` (a localization beyond
1 m is not a localization) and :func:`check_allocation` (an image header must not
promise more pixels than this machine's memory can hold).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from napari_nucleus_ai.core.errors import InputError, UsageError

__all__ = [
    "COMMANDS",
    "MAX_COORD_NM",
    "Param",
    "UsageError",
    "check_allocation",
    "command_param",
    "memory_bytes",
    "param_named",
    "validate",
    "widget_options",
]

# Localization coordinates beyond 1 m (1e9 nm) are garbage, not a sample.
MAX_COORD_NM = 1e9


@dataclass(frozen=True)
class Param:
    """One parameter: its type, range, choices and unit.

    Parameters
    ----------
    name : str
        What the user types (``"--epochs"``, or a ``--param`` name like ``"min_snr"``).
    kind : {float, int, bool, str}
        The value's type; strings are converted (``"4"`` -> 4.0 for a float).
    low, high : float, optional
        Inclusive bounds (exclusive when ``low_open`` / ``high_open``).
    choices : tuple, optional
        The only values allowed.
    optional : bool
        ``None`` is allowed (meaning "not given", "estimate" or "the card's default").
    unit : str
        Shown after the range (``"um"``, ``"nm"``, ``"px"``).
    key : str, optional
        The key in the values dict (argparse ``dest``); default: ``name`` without
        leading dashes, with ``-`` as ``_``.
    step : float, optional
        The increment of a dock's spin box for it (see :func:`widget_options`).
    pattern : str, optional
        A text value must match this regular expression whole.
    what : str, optional
        What is allowed, in words, when the range does not say it (with ``pattern``).
    """

    name: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False
    unit: str = ""
    key: str | None = None
    step: float | None = None
    pattern: str | None = None
    what: str | None = None

    @property
    def dest(self) -> str:
        return self.key or self.name.lstrip("-").replace("-", "_")

    def allowed(self) -> str:
        """What is allowed, in a few words (``"a number > 0 nm"``, ``"one of 1, 2, 4, 8"``)."""
        unit = f" {self.unit}" if self.unit else ""
        if self.what:
            return self.what
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return "a text value"
        what = "an integer" if self.kind is int else "a finite number"
        lo = None if self.low is None else _fmt(self.low)
        hi = None if self.high is None else _fmt(self.high)
        if lo is not None and hi is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{what} in {left}{lo}, {hi}{right}{unit}"
        if lo is not None:
            return f"{what} {'>' if self.low_open else '>='} {lo}{unit}"
        if hi is not None:
            return f"{what} {'<' if self.high_open else '<='} {hi}{unit}"
        return what + unit

    def limits(self) -> tuple[float | None, float | None]:
        """``(low, high)`` as declared (open bounds as given); docks use :func:`widget_options`."""
        return self.low, self.high

    def check(self, value: Any, where: str | None = None, shown: str = "{name} {value}") -> Any:
        """Return ``value`` converted to :attr:`kind`, or raise :class:`UsageError`.

        ``shown`` names the parameter in the message (``{name}``, ``{value}`` filled).
        """
        if value is None:
            if self.optional:
                return None
            self._fail(value, where, shown)
        v = self._convert(value, where, shown)
        if self.choices is not None:
            if v not in self.choices:
                self._fail(value, where, shown)
            return v
        if self.pattern is not None and not re.fullmatch(self.pattern, str(v)):
            self._fail(value, where, shown)
        if self.kind in (int, float):
            if not math.isfinite(v):
                self._fail(value, where, shown)
            if self.low is not None and (v <= self.low if self.low_open else v < self.low):
                self._fail(value, where, shown)
            if self.high is not None and (v >= self.high if self.high_open else v > self.high):
                self._fail(value, where, shown)
        return v

    def _convert(self, value, where, shown):
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, int | float) and value in (0, 1):
                return bool(value)
            low = str(value).strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            self._fail(value, where, shown)
        if self.kind is str:
            return str(value)
        if isinstance(value, bool):
            self._fail(value, where, shown)
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            self._fail(value, where, shown)
        if self.kind is int:
            if not math.isfinite(f) or f != int(f):
                self._fail(value, where, shown)
            return int(f)
        return f

    def _fail(self, value, where, shown):
        text = value if isinstance(value, str) else _show(value)
        prefix = f"{where}: " if where else ""
        label = shown.format(name=self.name, value=text)
        raise UsageError(f"{prefix}{label}: must be {self.allowed()}")


def validate(
    schema: Iterable[Param] | Mapping[str, Param],
    values: Mapping[str, Any],
    where: str | None = None,
    *,
    unknown: str | None = None,
    shown: str = "{name} {value}",
) -> dict:
    """Check ``values`` against ``schema``; return them converted, or raise :class:`UsageError`.

    Parameters
    ----------
    schema : Params (or a dict of them)
        Keys missing from ``values`` are not checked (their defaults apply).
    values : mapping
        ``{dest: value}`` (e.g. ``vars(args)`` or ``--param`` values).
    where : str, optional
        Prefix of the message (a command or method name).
    unknown : str, optional
        When given, keys of ``values`` that are not in the schema are refused with
        this word in the message (``"wbc parameter"``); otherwise they pass through.
    shown : str
        How a parameter is named in the message; ``{name}`` and ``{value}`` are filled
        (default ``"{name} {value}"``; ``"--param {name}={value}"`` for method parameters).
    """
    params = list(schema.values()) if isinstance(schema, Mapping) else list(schema)
    by_dest = {p.dest: p for p in params}
    out = dict(values)
    if unknown is not None:
        extra = sorted(set(values) - set(by_dest))
        if extra:
            names = ", ".join(sorted(by_dest))
            prefix = f"{where}: " if where else ""
            raise UsageError(f"{prefix}unknown {unknown}(s) {', '.join(extra)}; known: {names}")
    for dest, p in by_dest.items():
        if dest not in values:
            continue
        out[dest] = p.check(values[dest], where, shown)
    return out


#: A spin box's end where a schema sets no bound.
UNBOUNDED = 1e9
#: Qt spin boxes hold 32-bit integers: an integer option's box ends here at most.
INT_WIDGET_MAX = 2**31 - 1


def widget_options(param: Param, *, none_value: float | None = None) -> dict:
    """What a dock's widget for ``param`` may hold: the schema as a spin box or a choice box.

    Parameters
    ----------
    param : Param
    none_value : float, optional
        For an ``optional`` parameter: the spin-box value that means ``None`` ("from the
        layer", "estimate"); it becomes the box's minimum, below the schema's range.

    Returns
    -------
    dict
        ``{"choices": [...]}`` for a parameter with choices, else ``{"min", "max", "step",
        "decimals"}``: an open bound moves in by the smallest step the box shows
        (``10**-decimals``, or 1 for integers); a missing bound is :data:`UNBOUNDED`
        (:data:`INT_WIDGET_MAX` for integers, which also caps integer ranges).
    """
    if param.choices is not None:
        return {"choices": list(param.choices)}
    if param.kind not in (int, float):
        raise ValueError(f"{param.name} is a {param.kind.__name__}: no spin box for it")
    integer = param.kind is int
    if integer:
        step = max(1, int(param.step or 1))
        decimals, tiny = 0, 1
    else:
        step = float(param.step or _auto_step(param))
        decimals = max(2, -math.floor(math.log10(step)))
        tiny = 10.0**-decimals
    lo = -UNBOUNDED if param.low is None else param.low + (tiny if param.low_open else 0)
    hi = UNBOUNDED if param.high is None else param.high - (tiny if param.high_open else 0)
    if integer:
        lo, hi = max(int(math.ceil(lo)), -INT_WIDGET_MAX), min(int(math.floor(hi)), INT_WIDGET_MAX)
    else:
        lo, hi = round(lo, decimals), round(hi, decimals)
    if none_value is not None:
        if not param.optional:
            raise ValueError(f"{param.name} is not optional: no spin-box value may mean None")
        lo = min(lo, none_value)
    return {"min": lo, "max": hi, "step": step, "decimals": decimals}


def _auto_step(param: Param) -> float:
    """A float's step when its schema gives none: a hundredth of its range's order."""
    lo = 0.0 if param.low is None else float(param.low)
    hi = lo + 100.0 if param.high is None else float(param.high)
    span = max(hi - lo, 1e-6)
    return min(1.0, 10.0 ** (math.floor(math.log10(span)) - 2))


def param_named(schema: Iterable[Param], name: str) -> Param:
    """The parameter called ``name`` (or with that ``dest``) in ``schema``; ``KeyError`` if none."""
    for p in schema:
        if name in (p.name, p.dest):
            return p
    raise KeyError(f"no parameter {name!r} in this schema")


def command_param(command: str, name: str) -> Param:
    """The schema of command line option ``name`` of ``command`` (``"train"``, ``"--epochs"``)."""
    return param_named(COMMANDS[command], name)


# ---------------------------------------------------------------- command line options
# One Param per numeric option (its ``key`` is the argparse ``dest``), checked by
# ``cli/_params.py`` before a command runs; the docks take the same objects.
TTA = (1, 2, 4, 8)
_POS = {"low": 0.0, "low_open": True}

_INFERENCE = (
    Param("--batch-size", int, 1, 100_000),
    Param("--tta", int, choices=TTA, optional=True),
    Param("--mc-dropout", int, 0, 1000, optional=True),
    Param("--threshold", float, 0, 1, optional=True, step=0.05),
)

_PIXEL = (
    Param("--pixel-size-um", float, high=1e4, optional=True, unit="um", step=0.001, **_POS),
    Param("--pixel-size-nm", float, high=1e7, optional=True, unit="nm", step=10, **_POS),
    Param("--camera-pixel", float, high=1e7, optional=True, unit="nm", **_POS),
)

_TRAINING = (
    Param("--epochs", int, 1, 100_000),
    Param("--patience", int, 1, 100_000),
    Param("--batch-size", int, 1, 100_000),
    Param("--lr", float, high=10, **_POS),
    Param("--val-fraction", float, 0, 1, high_open=True, step=0.05),
    Param("--holdout", float, 0, 1, high_open=True, step=0.05),
    Param("--seed", int, 0, 2**32 - 1),
    Param("--threads", int, 1, 4096, optional=True),
    Param("--crop-size", int, 8, 4096, optional=True, unit="px"),
    Param("--pixel-size", float, high=1e7, optional=True, **_POS),
    Param("--members", int, 1, 100),
    Param("--tta", int, choices=TTA),
    Param("--threshold", float, 0, 1, step=0.05),
    Param("--render-pixel-nm", float, high=20, unit="nm", **_POS),
    Param("--patches", int, 1, 10_000),
    Param("--stain-augment", int, 0, 8, optional=True),
)

#: ``train --arch latent-diffusion``: the autoencoder's shape (the card's
#: ``architecture.params.latent``: ``width``, ``channels``, ``factor``; a card's values are
#: held to the same ranges) and how it is trained (``diffusion.autoencoder`` in the card).
#: ``None`` means the default (``LATENT_DEFAULTS`` / ``AE_TRAIN_DEFAULTS`` in
#: ``models/diffusion/latent.py``).
LATENT_TRAINING = (
    Param("--ae-width", int, 4, 256, optional=True),
    Param("--latent-channels", int, 1, 16, optional=True),
    Param("--ae-factor", int, choices=(2, 4, 8), optional=True),
    Param("--ae-steps", int, 0, 1_000_000, optional=True),
    Param("--ae-lr", float, high=1, optional=True, **_POS),
    Param("--ae-perceptual", float, 0, 100, optional=True, step=0.1),
    Param("--ae-colour", float, 0, 100, optional=True, step=0.1),
    Param("--ae-latent-noise", float, 0, 10, optional=True, step=0.05),
    Param("--latent-std", float, high=4, optional=True, step=0.05, **_POS),
)

#: ``train --arch diffusion`` / ``latent-diffusion``: the UNet's width, the channels of its
#: first level (the card's ``architecture.params.base``; a card's value is held to the same
#: range). ``None`` means the default (``ARCH_DEFAULTS`` in ``models/diffusion/train.py``).
UNET_TRAINING = (Param("--unet-base", int, 4, 512, optional=True),)

#: The numeric options of every command, by command name.
COMMANDS: dict[str, tuple[Param, ...]] = {
    "info": _PIXEL,
    "render": (
        *_PIXEL,
        Param("--pixel-size", float, high=1e6, unit="nm", step=1, **_POS),
        Param("--sigma", float, high=1e6, optional=True, unit="nm", step=1, **_POS),
        Param("--z-pixel-size", float, high=1e6, optional=True, unit="nm", **_POS),
        Param("--max-precision", float, optional=True, unit="nm", **_POS),
        Param("--min-photons", float, 0, optional=True),
        Param("--drift-segments", int, 0, 10_000),
        # the two ends of --frames FIRST:LAST (a text option): whole frame numbers, either
        # optional (None = open end)
        Param("--frames FIRST", int, 0, optional=True, key="frame_first"),
        Param("--frames LAST", int, 0, optional=True, key="frame_last"),
    ),
    "measure": (
        *_PIXEL,
        Param("--radius", float, high=1e6, unit="nm", **_POS),
        Param("--dark", int, 0, 10_000),
        Param("--frc-pixel", float, high=1e5, unit="nm", **_POS),
        Param("--frc-splits", int, 1, 1000),
        Param("--eps", float, high=1e6, unit="nm", **_POS),
        Param("--min", int, 1, 1_000_000, key="min_samples"),
        Param("--density-factor", float, 0, 1000, optional=True, step=0.5),
        Param("--nena-range", float, high=1e5, unit="nm", **_POS),
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
    "train": (*_PIXEL, *_TRAINING, *LATENT_TRAINING, *UNET_TRAINING),
    "retrain": _TRAINING,
    "predict": (
        *_PIXEL,
        Param("--pixel-size", float, high=1e7, optional=True, **_POS),
        *_INFERENCE,
    ),
    "classify": (
        *_PIXEL,
        *_INFERENCE,
        Param("--pixel-size", float, high=1e7, optional=True, **_POS),
    ),
    "generate": (
        Param("-n", int, 1, 100_000, key="n"),
        Param("--steps", int, 1, 10_000),
        Param("--guidance", float, 0, 100, step=0.5),
        Param("--seed", int, 0, 2**32 - 1),
    ),
    "export-trainset": (Param("--window", float, optional=True, **_POS),),
    "export-geojson": (Param("--object-type", str, choices=("detection", "annotation")),),
    "export-zarr": (
        Param("--pixel-size", float, high=1e7, optional=True, unit="um or nm (--unit)", **_POS),
        Param("--unit", str, choices=("um", "nm")),
        Param(
            "--name",
            str,
            pattern=r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}",
            what="a group name: letters, digits, '_', '-' and '.' (not first), no '/'",
        ),
    ),
    "export-bioimageio": (Param("--tta", int, choices=TTA, optional=True),),
    "track": (
        *_PIXEL,
        Param("--frame-interval-h", float, high=1e4, optional=True, unit="h", step=0.25, **_POS),
        Param("--channel", int, 0, 1024),
        Param("--max-step-um", float, high=1e4, unit="um", **_POS),
        Param("--split-distance-um", float, 0, 1e4, unit="um"),
        Param("--max-gap", int, 0, 1000),
        Param("--batch-size", int, 1, 100_000),
    ),
}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e16 or not math.isfinite(value) else f"{value:.3g}"
    return str(value)


def memory_bytes() -> int:
    """This machine's physical memory in bytes (8 GiB when it cannot be asked)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # Windows, odd platforms
        try:
            import psutil

            return int(psutil.virtual_memory().total)
        except Exception:  # noqa: BLE001 - psutil missing or failing
            return 8 * 2**30


def check_allocation(path, shape, itemsize: int, what: str = "the image") -> None:
    """Refuse, in one line, to allocate ``shape`` x ``itemsize`` bytes above half the memory."""
    n = 1.0
    for s in shape:
        n *= float(s)
    nbytes = n * float(itemsize)
    limit = memory_bytes() / 2
    if nbytes > limit:
        dims = " x ".join(str(int(s)) for s in shape)
        raise InputError(
            path,
            f"the header promises {dims} ({nbytes / 2**30:.1f} GiB) for {what}; more than "
            f"half this machine's memory ({limit / 2**30:.1f} GiB): refusing to allocate it",
        )
