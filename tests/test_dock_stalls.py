"""What keeps the docks' event loop moving: torch loaded without the GIL, hidden plots not
drawn, results built in the worker and shown one layer per event-loop turn."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest


def test_preload_torch_loads_its_libraries_without_importing_torch():
    """In a fresh interpreter: the libraries are in the process, ``torch`` is not imported
    yet, and importing it afterwards works (and is then left alone)."""
    pytest.importorskip("torch")
    if not sys.platform.startswith("linux"):
        pytest.skip("checks /proc/self/maps (Linux)")
    code = textwrap.dedent(
        """
        import sys
        from napari_nucleus_ai.widgets._worker import preload_torch
        libs = preload_torch()
        assert "torch" not in sys.modules, "preload imported torch"
        names = [lib.rsplit("/", 1)[-1] for lib in libs]
        assert "libtorch_cpu.so" in names, names
        maps = open("/proc/self/maps").read()
        assert all(lib in maps for lib in libs), libs
        import torch
        assert float(torch.ones(3).sum()) == 3.0
        assert preload_torch() == []  # torch imported: nothing to do
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_warm_up_imports_torch_and_the_classifier_once_in_the_background():
    """In a fresh interpreter: the warm-up returns a running daemon thread at once; when it
    is done, torch and the classification code are imported; a second call does nothing."""
    pytest.importorskip("torch")
    code = textwrap.dedent(
        """
        import sys
        from napari_nucleus_ai.widgets._worker import warm_up
        t = warm_up()
        assert t is not None and t.daemon
        t.join(600)
        assert not t.is_alive()
        assert "torch" in sys.modules and "napari_nucleus_ai.classify.cells" in sys.modules
        assert warm_up() is None
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_importing_the_worker_helpers_does_not_import_torch():
    code = "import sys, napari_nucleus_ai.widgets._worker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


@pytest.mark.gui
def test_hidden_dock_figure_draws_only_once_shown(qtbot):
    """A plot folded away (or in a dock not on show) is not rendered on every update and
    resize; it is rendered when it is shown."""
    from napari_nucleus_ai.widgets._figure import DockFigure

    fig = DockFigure(figsize=(3.2, 1.9))
    draws = []
    fig.canvas.draw = lambda: draws.append(1)  # matplotlib's render, counted
    fig.figure.add_subplot(111).plot([1, 2, 3])
    fig.redraw()
    fig.canvas.resize(300, 170)
    qtbot.wait(100)
    assert draws == []
    qtbot.addWidget(fig.canvas)
    fig.canvas.show()
    qtbot.waitUntil(lambda: len(draws) >= 1, timeout=5000)
    n = len(draws)
    fig.redraw()  # shown: drawn on update again
    qtbot.waitUntil(lambda: len(draws) > n, timeout=5000)
    fig.canvas.hide()


@pytest.mark.gui
def test_train_plot_is_built_when_first_shown(qtbot):
    """The Classifier's training plot (in a section that starts folded) builds its figure
    the first time it is shown, with the rows it got before."""
    from napari_nucleus_ai.widgets._train_plot import TrainPlot

    plot = TrainPlot()
    plot.add({"train_loss": 1.0, "val_loss": 1.2})
    plot.add({"train_loss": 0.8, "val_loss": 1.0, "val_accuracy": 0.5})
    assert plot.figure is None
    qtbot.addWidget(plot.canvas)
    plot.canvas.show()
    qtbot.waitUntil(lambda: plot.figure is not None, timeout=5000)
    assert [ln.get_label() for ln in plot.ax.get_lines()] == ["train loss", "val loss"]
    assert [ln.get_label() for ln in plot.ax2.get_lines()] == ["val accuracy"]
    assert len(plot.ax.get_lines()[0].get_xdata()) == 2
    plot.clear()
    assert plot.ax.get_lines() == []
    plot.canvas.hide()


@pytest.mark.gui
def test_segment_dock_threaded_result_is_the_sync_one(make_napari_viewer, qtbot):
    """The Labels layer built in the worker is the one the synchronous path shows: data,
    features, metadata, contour; the worker has finished when the dock is idle."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    smear = simulate_smear(seed=2, shape=(240, 320), n_wbc=2)
    um = smear.pixel_size_um
    got = []
    for sync in (True, False):
        viewer = make_napari_viewer()
        img = viewer.add_image(smear.image, rgb=True, scale=(um, um), units="micrometer",
                               name="smear")  # fmt: skip
        _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Segmentation")
        dock.layer.value = img
        worker = dock.run(sync=sync)
        qtbot.waitUntil(lambda d=dock, w=worker: not d.busy and not w.is_running, timeout=120_000)
        qtbot.waitUntil(lambda v=viewer: "smear wbc" in v.layers, timeout=10_000)
        got.append(viewer.layers["smear wbc"])
    a, b = got
    assert a is not b and np.array_equal(a.data, b.data) and int(a.data.max()) > 0
    assert a.features.equals(b.features)
    assert a.metadata.keys() == b.metadata.keys() and a.metadata["method"] == "wbc"
    assert a.contour == b.contour == 2 and tuple(a.scale) == tuple(b.scale)
