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

    from napari_nucleus_ai.demo.viewer import build_demo

    width, _, height = args.size.partition("x")
    viewer = napari.Viewer(title="napari-nucleus-ai demo", show=True)
    viewer.window._qt_window.resize(int(width), int(height))
    failed = build_demo(viewer, args.steps)
    _tabify_docks(viewer, front="Classifier")
    if failed:
        print(f"napari-nucleus-ai: demo steps failed: {', '.join(failed)}", file=sys.stderr)
    if not args.screenshot:
        napari.run()
        return 0
    _tabify_docks(viewer, front="Classifier")
    viewer.window._qt_window.resize(int(width), int(height))
    for _ in range(20):
        QApplication.processEvents()
    from napari_nucleus_ai.demo.viewer import _focus

    _focus(viewer)  # again, now that the window has its final size
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
    viewer.close()
    print(args.screenshot)
    return 1 if failed else 0


def _tabify_docks(viewer, front: str) -> None:
    """Stack the plugin's docks as tabs (one column of nine docks is taller than any screen)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QDockWidget

    win = viewer.window._qt_window
    docks = [
        d
        for d in win.findChildren(QDockWidget)
        if win.dockWidgetArea(d) == Qt.DockWidgetArea.RightDockWidgetArea and d.isVisible()
    ]
    for other in docks[1:]:
        win.tabifyDockWidget(docks[0], other)
    for (
        d
    ) in docks:  # tabbed docks share the height; let each one scroll instead of growing the window
        _scrollable(d)
    for d in docks:
        if front in d.windowTitle():
            d.raise_()


def _scrollable(dock) -> None:
    from qtpy.QtWidgets import QScrollArea

    inner = dock.widget()
    if inner is None or isinstance(inner, QScrollArea):
        return
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(inner)
    dock.setWidget(area)
