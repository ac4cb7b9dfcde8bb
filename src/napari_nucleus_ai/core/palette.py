"""Class colours: one palette for model cards, docks, reports and exports.

A model's card stores a colour per class (:func:`default_colours` when it is
trained); everything that draws classes asks :func:`class_colours`, so a class
has the same colour in the Classifier dock, the Review dock, the batch layer
and the report, and ``unidentified`` / ``artefact`` look the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Colours given to a model's classes in order (cycled beyond its length). No grey: grey is
#: :data:`UNIDENTIFIED` (and :data:`ARTEFACT`), which no class may be mistaken for.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#ad494a",
    "#637939",
    "#ce6dbd",
    "#8c6d31",
    "#3182bd",
)
#: Cells the model would not name (uncertain or out of domain).
UNIDENTIFIED = "#9e9e9e"
#: Objects the annotator marked as not a cell.
ARTEFACT = "#555555"
#: Colours of the classes every review adds, whatever the model.
EXTRA = {"unidentified": UNIDENTIFIED, "artefact": ARTEFACT}


def default_colours(classes: Iterable[str]) -> list[str]:
    """The palette's colours for ``classes`` in order (what a new model card stores)."""
    return [PALETTE[i % len(PALETTE)] for i, _ in enumerate(classes)]


def class_colours(classes: Iterable[str], given: Mapping[str, str] | None = None) -> dict:
    """A colour per class: the model's own (``given``, e.g. from its card) else the palette.

    ``unidentified`` and ``artefact`` always get :data:`UNIDENTIFIED` and :data:`ARTEFACT`.
    """
    given = dict(given or {})
    out = {}
    model_classes = [c for c in classes if c not in EXTRA]
    for c, default in zip(model_classes, default_colours(model_classes), strict=True):
        out[c] = given.get(c) or default
    out.update(EXTRA)
    return out
