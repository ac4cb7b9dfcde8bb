"""New ROI layers share the viewer's physical unit before they join it.

A Shapes or Points layer added with nothing drawn and no physical size
(``viewer.add_shapes()`` for an ROI, from a script, the console or napari's *New shapes*
button) would be a ``pixel`` layer beside nm or um layers: napari calls the units
inconsistent and the scale bar loses its unit. :func:`adopt_units_before_insert` gives
such a layer the units and scale of the layer it is drawn over (:func:`give_units`)
*before* it joins the list - napari's canvas checks the units as it draws the new layer,
so the list's ``inserted`` event is too late. The Localizations dock and the demo viewer
(:mod:`napari_nucleus_ai.demo.units`) both install it.
"""

from __future__ import annotations

import weakref

#: layer lists whose ``insert`` adopts units (kept here: napari 0.9 deprecates plugins
#: setting private attributes on its objects)
_ADOPTING: weakref.WeakSet = weakref.WeakSet()


def _is_length(unit) -> bool:
    import pint

    return unit.dimensionality == pint.get_application_registry().Unit("um").dimensionality


def _has_lengths(layer) -> bool:
    units = getattr(layer, "units", None)
    return bool(units) and all(_is_length(u) for u in units[-2:])


def give_units(layer, reference) -> bool:
    """Give an empty, unit-less Shapes or Points ``layer`` the units and scale of ``reference``.

    ``layer`` is changed only when nothing is drawn on it yet (no coordinates to reinterpret),
    none of its axes has a physical unit and ``reference`` has lengths. Drawn over a
    localization render, it takes the table's unit with scale 1 (an ROI's vertices are then in
    nm, as the Localizations dock reads them); otherwise the reference's pixel size, as
    napari's own *New shapes layer* button does. Returns whether ``layer`` was changed.
    """
    from napari.layers import Points, Shapes

    if not isinstance(layer, Shapes | Points) or len(layer.data) or reference is None:
        return False
    if any(_is_length(u) for u in layer.units) or not _has_lengths(reference):
        return False
    n = min(layer.ndim, reference.ndim)
    units = list(layer.units)
    units[-n:] = list(reference.units)[-n:]
    scale = list(layer.scale)
    if (reference.metadata or {}).get("localizations") is None:
        scale[-n:] = list(reference.scale)[-n:]
    layer.scale = scale
    layer.units = units
    return True


def _reference(layers, new, active):
    """The layer ``new`` is drawn over: the active one before it came, else the top one with
    lengths (visible ones first)."""
    if active is not None and active is not new and _has_lengths(active):
        return active
    others = [ly for ly in reversed(layers) if ly is not new and _has_lengths(ly)]
    return next((ly for ly in others if ly.visible), others[0] if others else None)


def adopt_units_before_insert(viewer) -> None:
    """Give every empty, unit-less Shapes/Points layer added to ``viewer`` the units of the
    layer it is drawn over, before it joins the layer list (installed once per viewer)."""
    layers = viewer.layers
    if layers in _ADOPTING:
        return
    _ADOPTING.add(layers)
    insert = layers.insert

    def adopt_then_insert(index, value):
        give_units(value, _reference(layers, value, layers.selection.active))
        return insert(index, value)

    layers.insert = adopt_then_insert  # append and extend go through insert
