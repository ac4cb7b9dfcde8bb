"""The guided tour: captions on the canvas, steps in order, one unit on screen."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.gui


def test_tour_runs_steps_in_order_with_captions(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.demo.tour import TOUR, Tour

    monkeypatch.setitem(os.environ, "NAPARI_NUCLEUS_AI_SYNC", "1")
    assert [s.key for s in TOUR] == [
        "read",
        "render",
        "segment",
        "classify",
        "uncertainty",
        "review",
        "retrain",
    ]
    viewer = make_napari_viewer()
    tour = Tour(viewer)
    overlay = viewer.canvas.overlays.text
    assert overlay.visible and "Guided tour" in overlay.text
    tour.goto(2)
    assert tour.failed == [] and tour.current == 2 and tour.done == 2
    assert overlay.text.startswith("2/7  Render")
    assert any("[zoom]" in ly.name for ly in viewer.layers)
    tour.goto(1)  # back: no step runs again, the caption follows
    assert tour.done == 2 and overlay.text.startswith("1/7  Read")


def test_demo_cli_has_tour_step_and_movie():
    import argparse

    from napari_nucleus_ai.cli import demo

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    args = p.parse_args(["--tour", "--step", "3", "--movie", "m.mp4"])
    assert args.tour and args.step == 3 and args.movie == "m.mp4"
