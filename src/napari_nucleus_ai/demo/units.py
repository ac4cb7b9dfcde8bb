"""One length unit on screen: every layer's lengths drawn (and the scale bar labelled) in um.

The demo's layers carry their own units: STORM renders in nm (``scale`` 10-20 nm per
pixel), smears, slides and time-lapses in um. napari >= 0.6 draws compatible units in
one world unit (the smallest, nm) and says "Inconsistent units across layers" only when
a layer's units cannot be converted (a length beside ``pixel``). :func:`show_lengths_in`
sets the viewer's unit override (``viewer.layers.units``) so the lengths of every layer
are shown in one unit, um by default (a smear reads "20 um", not "20000 nm"); each
layer keeps its own ``scale`` and ``units``, so cell tables, writers and the docks see
the numbers they always did (camera moves go through ``widgets._compat.set_view``).

The override is lifted just before a layer is inserted or removed and set again just
after, so napari never sees a layer list whose axes differ from the override (its
"dropping units override" warning, or dims left half-updated); when layers cannot share
a unit (``pixel`` beside nm) nothing is overridden and napari's own behaviour applies.

A Shapes or Points layer added with nothing drawn and no physical size
(``viewer.add_shapes()`` for an ROI, from a script or the console) would be such a
``pixel`` layer: before it joins the list it is given the units and scale of the layer it
is drawn over (:func:`give_units`), so it shares the one unit and the scale bar keeps its
unit.
"""

from __future__ import annotations

_CONNECTED = "_nucleus_ai_units"


def display_units(natural, unit: str = "um"):
    """``natural`` (napari's world units) with every length replaced by ``unit``."""
    import pint

    target = pint.get_application_registry().Unit(unit)
    return tuple(target if u.dimensionality == target.dimensionality else u for u in natural)


def apply_display_unit(viewer, unit: str = "um") -> None:
    """Set ``viewer.layers.units`` so that lengths show in ``unit`` (no-op when impossible)."""
    layers = viewer.layers
    if layers._units is not None:
        layers.units = None  # back to napari's natural units first
    natural = layers.units
    if not natural or len(layers) == 0:
        return
    wanted = display_units(natural, unit)
    if tuple(wanted) != tuple(natural):
        try:
            layers.units = wanted
        except ValueError:  # layers whose axes cannot share units: leave napari's choice
            layers.units = None


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


def show_lengths_in(viewer, unit: str = "um") -> None:
    """Keep every length of ``viewer`` shown in ``unit`` as layers come and go."""
    layers = viewer.layers
    if getattr(layers, _CONNECTED, None) == unit:
        apply_display_unit(viewer, unit)
        return
    setattr(layers, _CONNECTED, unit)
    insert = layers.insert

    def adopt_then_insert(index, value):
        # before the list's events: napari's canvas checks the units as it draws the new layer
        give_units(value, _reference(layers, value, layers.selection.active))
        return insert(index, value)

    layers.insert = adopt_then_insert  # append and extend go through insert

    def lift(event=None):
        # silently: a units event while the list changes leaves napari's dims half-updated
        if layers._units is not None:
            layers._units = None
            layers._clean_cache()

    def reapply(event=None):
        apply_display_unit(viewer, unit)

    layers.events.inserting.connect(lift)
    layers.events.removing.connect(lift)
    # after napari's own handlers (which set the dims from the new layer list)
    layers.events.inserted.connect(reapply, position="last")
    layers.events.removed.connect(reapply, position="last")
    reapply()
