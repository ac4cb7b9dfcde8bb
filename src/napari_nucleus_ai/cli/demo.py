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
    p.add_argument(
        "--tour",
        action="store_true",
        help="guided tour: read, render, segment, classify, uncertainty, review, retrain; "
        "one step per key press (n or PageDown; r runs the step again)",
    )
    p.add_argument(
        "--movie",
        metavar="MP4",
        help="record a zoom into a STORM nucleus (napari-animation; the [movie] extra) and exit",
    )
    p.add_argument(
        "--png",
        metavar="PNG",
        help="save the view the demo (or --tour --step N) ends on as a figure with a scale bar "
        "and a legend of classes, and exit",
    )
    p.add_argument(
        "--png-scale",
        type=float,
        default=2.0,
        metavar="X",
        help="--png: pixels per screen pixel (default 2)",
    )
    p.add_argument(
        "--step", type=int, metavar="N", help="tour: run steps 1..N at once and stop on step N"
    )


def run(args) -> int:
    import os
    import sys

    if not 0.5 <= args.png_scale <= 8:
        from napari_nucleus_ai.core.errors import UsageError

        raise UsageError(f"--png-scale {args.png_scale}: must be between 0.5 and 8")
    if args.screenshot or args.movie or args.png:
        os.environ.setdefault("NAPARI_NUCLEUS_AI_SYNC", "1")
    _demo_threads()  # finish all work before the shot
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.demo.viewer import build_demo

    width, _, height = args.size.partition("x")
    viewer = napari.Viewer(title="napari-nucleus-ai demo", show=True)
    viewer.window._qt_window.resize(int(width), int(height))
    if args.movie:
        from napari_nucleus_ai.demo.movie import zoom_movie
        from napari_nucleus_ai.demo.units import show_lengths_in

        show_lengths_in(viewer)
        print(zoom_movie(viewer, args.movie))
        viewer.close()
        return 0
    if args.tour or args.step:
        return _tour(viewer, args)
    failed = build_demo(viewer, args.steps)
    _tabify_docks(viewer, front="Classifier")
    if failed:
        print(f"napari-nucleus-ai: demo steps failed: {', '.join(failed)}", file=sys.stderr)
    if not (args.screenshot or args.png):
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
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False, flash=False)
        print(args.screenshot)
    if args.png:
        print(_figure(viewer, args))
    viewer.close()
    return 1 if failed else 0


def _figure(viewer, args) -> str:
    """The current view as a PNG figure (scale bar, legend of classes); one line to print."""
    from napari_nucleus_ai.demo.figure import save_view_figure

    path, bar, legend = save_view_figure(viewer, args.png, scale=args.png_scale)
    what = f"scale bar {bar.label}" if bar else "no scale bar"
    return f"{path} ({what}, {len(legend)} classes in the legend)"


def _demo_threads() -> None:
    """One torch thread for the demo (``NAPARI_NUCLEUS_AI_DEMO_THREADS`` overrides).

    The demo's models are small and see small batches (a few dozen nuclei per frame), where
    a second thread buys little, and on a busy 2-core machine it costs a lot: scoring the
    demo time-lapse took 37 s with 2 threads and 4.7 s with 1 (load 4-5).
    """
    import os

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("NAPARI_NUCLEUS_AI_DEMO_THREADS", "1"))))


def _tour(viewer, args) -> int:
    """The guided tour; with ``--screenshot`` a PNG of step N (or of every step up to N
    when the path holds ``{n}``: ``--step 7 --screenshot docs/images/tour-{n}.png``)."""
    import os
    import sys

    import napari

    from napari_nucleus_ai.demo.tour import Tour
    from napari_nucleus_ai.demo.units import show_lengths_in

    os.environ.setdefault("NAPARI_NUCLEUS_AI_SYNC", "1")  # a step finishes before the next
    show_lengths_in(viewer)
    tour = Tour(viewer)
    tour.bind_keys()
    every = bool(args.screenshot) and "{n}" in args.screenshot
    last = args.step or (len(tour.steps) if every else 0)
    for n in range(1, last + 1) if every else [last] if last else []:
        tour.goto(n)
        if every:
            print(_tour_shot(viewer, tour, args.screenshot.format(n=n)))
    if not (args.screenshot or args.png):
        napari.run()
        return 0
    if args.screenshot and not every:
        print(_tour_shot(viewer, tour, args.screenshot))
    if args.png:
        print(_figure(viewer, args))
    viewer.close()
    if tour.failed:
        print(f"napari-nucleus-ai: tour steps failed: {', '.join(tour.failed)}", file=sys.stderr)
    return 1 if tour.failed else 0


def _tour_shot(viewer, tour, path) -> str:
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.demo.tour import raise_dock

    dock = tour.steps[tour.current - 1].dock if tour.current else "Settings"
    _tabify_docks(viewer, front=dock)
    raise_dock(viewer, dock)
    for _ in range(20):
        QApplication.processEvents()
    viewer.screenshot(path, canvas_only=False, flash=False)
    return path


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
