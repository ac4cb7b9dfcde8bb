"""The review dock's outputs and sessions: CSV as shown, report, training set, retraining, restore.

Each function takes the :class:`~napari_nucleus_ai.widgets.review.ReviewWidget`
and calls the Qt-free core; file dialogs open only when no path is given
(tests pass paths).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _notify(msg: str) -> None:
    from napari.utils.notifications import show_info

    show_info(msg)


def _output_dir(w, name: str) -> Path:
    from napari_nucleus_ai.review.store import output_dir

    return output_dir(w.store_path, name, w.image_id)


# -- sessions -----------------------------------------------------------------------
def save_session_once(w, table, src: str | None) -> None:
    """Save the layer's labels and predictions the first time it is reviewed."""
    from napari_nucleus_ai.review.session import has_session, save_session
    from napari_nucleus_ai.review.store import image_id_for

    layer = w.layer
    if (
        has_session(w.store, w.image_id)
        or not isinstance(layer.data, np.ndarray)
        or layer.multiscale
    ):
        return
    unit = str(table["unit"].iloc[0]) if "unit" in table and len(table) else "px"
    save_session(
        w.store,
        w.image_id,
        layer.data,
        table,
        scale=list(layer.scale),
        translate=list(layer.translate),
        unit=unit,
        classes=w.queue.model_classes,
        model=(layer.metadata or {}).get("model") and str((layer.metadata or {}).get("model")),
        source=image_id_for(src, w.store.path) if src else None,
    )


def maybe_restore(w, layer) -> None:
    """When an image whose review was saved is opened, bring back its cells and corrections."""
    from napari.layers import Labels
    from qtpy.QtCore import QTimer

    path = getattr(getattr(layer, "source", None), "path", None)
    if not path or not Path(path).is_file() or isinstance(layer, Labels):
        return
    from napari_nucleus_ai.review.store import AnnotationStore, store_for_data

    store_file = store_for_data(path, w.project)
    if not store_file.exists():
        return  # never reviewed: do not create a store just by opening an image
    from napari_nucleus_ai.review.session import find_session_for_source

    store = AnnotationStore(store_file)
    image_id = find_session_for_source(store, path)
    if image_id is not None:
        QTimer.singleShot(0, lambda: restore(w, store, image_id))


def restore(w, store, image_id: str):
    """Add the saved labels of ``image_id`` (predictions + corrections) and review them."""
    from napari_nucleus_ai.cells import to_features
    from napari_nucleus_ai.review.queue import apply_corrections, review_classes, review_colours
    from napari_nucleus_ai.review.session import load_session
    from napari_nucleus_ai.widgets._classifier_parts import class_colormap

    s = load_session(store, image_id)
    if s is None:
        return None
    feats = to_features(apply_corrections(s.table, s.corrections))
    classes = s.info.get("classes") or None
    colors = review_colours(review_classes(classes or sorted(feats["class"].dropna().unique())))
    layer = w.viewer.add_labels(
        s.labels,
        name=f"{Path(image_id).name} cells (restored)",
        scale=s.scale,
        translate=s.translate,
        features=feats,
        opacity=0.5,
        colormap=class_colormap(feats, colors),
        metadata={"image_id": image_id, "classes": classes, "model": s.info.get("model")},
    )
    if w.project is None and store.path.parent != w.store_location(layer).parent:
        w.project = os.fspath(store.path.parent)
    w.attach(layer)
    idx = w.layer_box.findText(layer.name)
    if idx >= 0:
        w.layer_box.blockSignals(True)
        w.layer_box.setCurrentIndex(idx)
        w.layer_box.blockSignals(False)
    _notify(f"restored {len(feats)} cells and {len(s.corrections)} corrections of {image_id}")
    return layer


# -- outputs -----------------------------------------------------------------------------
def export_csv_dialog(w, path: str | None = None) -> Path | None:
    """Write the review table exactly as shown (rows, order, columns) to CSV."""
    from napari_nucleus_ai.review.report import export_table_csv

    if w.queue is None:
        return None
    if path is None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(w, "Export the table as shown", "", "CSV (*.csv)")
        if not path:
            return None
    w.flush()
    out = export_table_csv(w.table_model.df, path)
    _notify(f"wrote {len(w.table_model.df)} rows to {out}")
    return out


def write_report_for(w, out: str | os.PathLike | None = None) -> dict | None:
    """Differential report of the current image (CSV, PNG chart, one-page HTML)."""
    from napari_nucleus_ai.review.report import build_report, write_report
    from napari_nucleus_ai.widgets._review_view import model_name

    if w.queue is None:
        return None
    w.flush()
    hist = w.store.history(w.image_id) if w.store is not None else None
    rep = build_report(
        {w.image_id: w.queue.table.reset_index(drop=True)},
        {w.image_id: w.queue.corrections},
        w.queue.model_classes,
        title=w.image_id,
        authors=list(hist["author"].unique()) if hist is not None and len(hist) else [],
        models=[model_name(w.layer) or ""],
    )
    paths = write_report(rep, out or _output_dir(w, "reports"), "report")
    if w.open_outputs:
        from qtpy.QtCore import QUrl
        from qtpy.QtGui import QDesktopServices

        QDesktopServices.openUrl(QUrl.fromLocalFile(os.fspath(paths["html"])))
    from napari_nucleus_ai.review.report import calibration_text

    cal = calibration_text(rep)
    _notify(f"report: {paths['html']}" + (f" ({cal})" if cal else ""))
    return paths


def export_item(w):
    """The :class:`ExportItem` of the reviewed layer (image crops or STORM localizations)."""
    from napari.layers import Image

    from napari_nucleus_ai.cells import from_features
    from napari_nucleus_ai.review.export import ExportItem
    from napari_nucleus_ai.widgets._review_view import layer_source

    layer = w.layer
    table = from_features(layer.features)
    item = ExportItem(
        w.image_id,
        table,
        dict(w.queue.corrections),
        labels=np.asarray(layer.data),
        scale=list(layer.scale)[-2:],
        translate=list(layer.translate)[-2:],
    )
    src = layer_source(layer)
    from napari_nucleus_ai import localizations

    if src and localizations.sniff(src):
        item.localizations = localizations.read_localizations(src).data
        return item
    shape = layer.data.shape[-2:]
    for im in w.viewer.layers:
        if isinstance(im, Image) and not im.multiscale and im.data.shape[: len(shape)] == shape:
            path = getattr(im.source, "path", None)
            if path and localizations.sniff(path):
                item.localizations = localizations.read_localizations(path).data
            else:
                item.image = np.asarray(im.data)
            break
    return item


def export_trainset_dialog(w, out: str | None = None, include_predicted: bool = False, sync=None):
    """Export reviewed cells as class folders (crops or localization subsets) in a worker."""
    from napari_nucleus_ai.review.export import export_training_set
    from napari_nucleus_ai.widgets._worker import start_work

    if w.queue is None:
        return None
    if out is None:
        from qtpy.QtWidgets import QFileDialog

        out = QFileDialog.getExistingDirectory(w, "Folder for the training set")
        if not out:
            return None
    w.flush()
    done = {}

    def _done(res):
        done.update(res)
        _notify(f"training set: {res['files']} cells in {res['out']} ({res['counts']})")

    start_work(
        export_training_set,
        out,
        [export_item(w)],
        include_predicted=include_predicted,
        on_result=_done,
        description="export training set",
        sync=sync,
    )
    return done


def _cached_demo_model(name) -> str | None:
    """The cached demo package whose card is called ``name`` (the Classifier dock's demo models)."""
    if not name:
        return None
    try:
        from napari_nucleus_ai.classify.demo_models import DEMO_MODELS, model_path
        from napari_nucleus_ai.models.package import read_package

        for key in DEMO_MODELS:
            path = model_path(key)
            if path.exists() and read_package(path)[0].get("name") == name:
                return os.fspath(path)
    except Exception:  # noqa: BLE001 - no cache, unreadable cache: ask the user instead
        return None
    return None


def choose_model_file(w) -> str | None:
    """A model package to fine-tune: its ``.zip``, or the ``card.json`` of a package folder."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(
        w, "Model package to fine-tune", "", "Model packages (*.zip card.json);;All files (*)"
    )
    if not path:
        return None
    return os.fspath(Path(path).parent) if Path(path).name == "card.json" else path


def retrain_message(res: dict) -> str:
    """What retraining gave, with how many held-out cells the accuracies are measured on."""
    from napari_nucleus_ai.review.retrain import summary

    return f"new model {res['out']}: {summary(res)}"


def retrain_dialog(w, base_model: str | None = None, out: str | None = None, sync=None, **options):
    """Fine-tune the layer's model on the corrections; a new package version with metrics."""
    from napari_nucleus_ai.review.retrain import retrain_from_items
    from napari_nucleus_ai.widgets._worker import start_work

    if w.queue is None:
        return None
    meta = w.layer.metadata or {}
    model = base_model or meta.get("model_path") or _cached_demo_model(meta.get("model"))
    if model is None:
        model = choose_model_file(w)
        if not model:
            return None
    w.flush()
    if out is None:  # the next version, in the project's models/ folder
        from napari_nucleus_ai.models.package import read_package
        from napari_nucleus_ai.review.retrain import next_version_path

        version = int(read_package(model)[0].get("version", 1)) + 1
        out = _output_dir(w, "models") / next_version_path(model, version).name
    result = {}

    def _done(res):
        result.update(res)
        _notify(retrain_message(res))

    w.retrain_work = start_work(
        retrain_from_items,
        model,
        [export_item(w)],
        out,
        on_result=_done,
        description="retrain from corrections",
        sync=sync,
        **options,
    )
    return result


# -- demo --------------------------------------------------------------------------------
def demo_review(viewer, confirm: int = 6):
    """Demo step: the Review dock on the classified smear, a few cells already reviewed.

    Corrections go to a fresh temporary project folder so the demo never touches
    real annotation stores.
    """
    import tempfile

    from napari.layers import Labels
    from napari.utils.notifications import show_warning

    _, w = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Review")
    w.open_outputs = False
    classified = [
        ly
        for ly in viewer.layers
        if isinstance(ly, Labels) and "class" in getattr(ly, "features", {}) and len(ly.features)
    ]
    if not classified:
        show_warning("review: no classified cells yet (run the classifier first)")
        return w

    # the smear (brightfield model) in preference, as a lab-meeting differential would
    def _modality(ly):
        return ((ly.metadata or {}).get("model_card") or {}).get("modality")

    layer = next(
        (ly for ly in classified[::-1] if _modality(ly) == "brightfield_rgb"), classified[-1]
    )
    w.set_project(tempfile.mkdtemp(prefix="nucleus-ai-demo-review-"))
    w.layer_box.setCurrentText(layer.name)
    if w.layer is not layer:
        w.attach(layer)
    for _ in range(min(confirm, len(w.queue) - 1)):
        w.confirm()  # the annotator's first key presses: confirm the most uncertain cells
    w.flush()
    w.refresh_marks()
    viewer.layers.selection.active = layer
    return w
