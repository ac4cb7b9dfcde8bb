"""Lengths in one table: nanometres per unit, and the conversions every module uses.

Localization tables are in nm, smears, slides and stacks in um, and images of
unknown pixel size in ``px`` (no physical length: conversions to or from ``px``
return ``None``).
"""

from __future__ import annotations

#: Nanometres per unit, for every spelling a file or a user may give.
NM_PER = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "micron": 1000.0,
    "micrometer": 1000.0,
    "micrometre": 1000.0,
    "microns": 1000.0,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "pm": 1e-3,
}

#: The units cell tables and layers use (``px``: no physical size known).
UNITS = ("nm", "um", "px")


def canonical(unit: str | None) -> str:
    """``"nm"``, ``"um"`` or ``"px"`` for any spelling in :data:`NM_PER` (``px`` otherwise)."""
    u = str(unit or "px").strip()
    factor = NM_PER.get(u, NM_PER.get(u.lower()))
    if factor == 1.0:
        return "nm"
    if factor == 1000.0:
        return "um"
    return "px"


def nm_per(unit: str) -> float | None:
    """Nanometres in one ``unit`` (``None`` for ``px`` or an unknown unit)."""
    u = str(unit).strip()
    return NM_PER.get(u, NM_PER.get(u.lower()))


def convert(value, from_unit: str, to_unit: str):
    """``value`` (number or array) in ``from_unit`` expressed in ``to_unit``.

    Returns ``None`` when either unit has no physical length (``px``) and the two differ.
    """
    if from_unit == to_unit:
        return value
    a, b = nm_per(from_unit), nm_per(to_unit)
    if a is None or b is None:
        return None
    return value * (a / b)
