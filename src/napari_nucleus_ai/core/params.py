"""Parameter schemas and input bounds, checked before any work starts.

Every segmentation method and every command line option with a range declares a
:class:`Param` (type, finiteness, range, choices, unit). :func:`validate` checks a
dict of values against such a schema and raises :class:`~.errors.UsageError` with
one line naming the option, the value and what is allowed; the command line exits
with status 2 for it, as argparse does. The docks take their spin-box limits from
the same objects (:meth:`Param.limits`).

The bounds on inputs live here too: :data:`MAX_COORD_NM` (a localization beyond
1 m is not a localization) and :func:`check_allocation` (an image header must not
promise more pixels than this machine's memory can hold).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from napari_nucleus_ai.core.errors import InputError, UsageError

__all__ = [
    "MAX_COORD_NM",
    "Param",
    "UsageError",
    "check_allocation",
    "memory_bytes",
    "validate",
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

    @property
    def dest(self) -> str:
        return self.key or self.name.lstrip("-").replace("-", "_")

    def allowed(self) -> str:
        """What is allowed, in a few words (``"a number > 0 nm"``, ``"one of 1, 2, 4, 8"``)."""
        unit = f" {self.unit}" if self.unit else ""
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
        """``(low, high)`` for a dock's spin box (open bounds as given)."""
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
