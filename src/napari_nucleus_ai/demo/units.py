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

import weakref

from napari_nucleus_ai.widgets._units import adopt_units_before_insert, give_units

__all__ = ["apply_display_unit", "display_units", "give_units", "show_lengths_in"]

#: the unit each viewer's layer list is kept in (not an attribute on napari's object:
#: napari 0.9 deprecates plugins setting private attributes on it)
_CONNECTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def show_lengths_in(viewer, unit: str = "um") -> None:
    """Keep every length of ``viewer`` shown in ``unit`` as layers come and go."""
    layers = viewer.layers
    if _CONNECTED.get(layers) == unit:
        apply_display_unit(viewer, unit)
        return
    _CONNECTED[layers] = unit
    adopt_units_before_insert(viewer)  # ROI layers join the one unit (widgets._units)

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
