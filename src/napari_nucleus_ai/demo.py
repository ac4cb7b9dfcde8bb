"""The one-command demo: sample data, the plugin's docks, and results on screen.

:data:`DEMO_STEPS` is an ordered list of ``(title, function(viewer))``. Each
capability adds its own step (open a sample, segment it, classify it...). Steps
run in order; one that fails is reported and skipped so a lab-meeting demo never
dies on one broken piece.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

PLUGIN = "napari-nucleus-ai"


def _docks(viewer) -> None:
    viewer.window.add_plugin_dock_widget(PLUGIN, "Settings")


def _storm(viewer) -> None:
    from .widgets.localizations import demo_storm

    demo_storm(viewer)


def _smear(viewer) -> None:
    from .widgets.slide import demo_smear

    demo_smear(viewer)


def _segment(viewer) -> None:
    from .widgets.segment import demo_segment

    demo_segment(viewer)


def _classify(viewer) -> None:
    from .widgets.classifier import demo_classify

    demo_classify(viewer)


def _review(viewer) -> None:
    from .widgets._review_outputs import demo_review

    demo_review(viewer)


def _infection(viewer) -> None:
    from .widgets.infection import demo_infection

    demo_infection(viewer)


DEMO_STEPS: list[tuple[str, Callable]] = [
    ("docks", _docks),
    # each capability appends its step below, in pipeline order:
    # storm (issue 3), smear (issue 4), segment (issue 5), classify (issue 6), review (issue 7)
    ("storm", _storm),
    ("smear", _smear),
    ("segment", _segment),
    ("classify", _classify),
    ("review", _review),
    ("infection", _infection),
]


def build_demo(viewer, steps: list[str] | None = None) -> list[str]:
    """Run the demo steps on ``viewer``; return the titles of steps that failed."""
    from .errors import one_line

    failed = []
    for title, step in DEMO_STEPS:
        if steps is not None and title not in steps:
            continue
        try:
            step(viewer)
        except Exception as e:  # noqa: BLE001 - a demo step must not kill the demo
            log.exception("demo step %s failed", title)
            from napari.utils.notifications import show_warning

            show_warning(f"demo step '{title}' failed: {one_line(e)}")
            failed.append(title)
    return failed
