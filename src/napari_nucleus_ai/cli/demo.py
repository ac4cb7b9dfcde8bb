"""``napari-nucleus-ai demo``: napari with the plugin's sample data and docks."""

from __future__ import annotations

HELP = "open napari with sample data, the plugin's docks and results (or save a screenshot)"


def add_arguments(p) -> None:
    p.add_argument(
        "--screenshot",
        metavar="PNG",
        help="render the whole window to PNG and exit (works under xvfb-run)",
    )
    p.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    p.add_argument("--steps", nargs="*", help="run only these demo steps")


def run(args) -> int:
    import os
    import sys

    if args.screenshot:
        os.environ.setdefault("NAPARI_NUCLEUS_AI_SYNC", "1")  # finish all work before the shot
    import napari
    from qtpy.QtWidgets import QApplication

    from ..demo import build_demo

    width, _, height = args.size.partition("x")
    viewer = napari.Viewer(title="napari-nucleus-ai demo", show=True)
    viewer.window._qt_window.resize(int(width), int(height))
    failed = build_demo(viewer, args.steps)
    if failed:
        print(f"napari-nucleus-ai: demo steps failed: {', '.join(failed)}", file=sys.stderr)
    if not args.screenshot:
        napari.run()
        return 0
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
    viewer.close()
    print(args.screenshot)
    return 1 if failed else 0
