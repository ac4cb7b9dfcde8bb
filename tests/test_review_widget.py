"""The Review dock in a real viewer: keys, camera, saved marks, counts, CSV, report, restore."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.cells import measure_cells, to_features
from napari_nucleus_ai.review.store import STORE_NAME, AnnotationStore

pytestmark = pytest.mark.gui
CLASSES = ["lymphocyte", "monocyte", "neutrophil"]


def classified_field(n=12, scale=0.25, seed=0, ndim=2):
    rng = np.random.default_rng(seed)
    size = 40 * int(np.ceil(np.sqrt(n))) + 20
    shape = (3, size, size) if ndim == 3 else (size, size)
    labels = np.zeros(shape, np.int32)
    img = np.full((size, size, 3), 230, np.uint8)
    yy, xx = np.ogrid[:size, :size]
    k = int(np.ceil(np.sqrt(n)))
    for i in range(n):
        cy, cx = 30 + 40 * (i // k), 30 + 40 * (i % k)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < 100
        if ndim == 3:
            labels[1][m] = i + 1
        else:
            labels[m] = i + 1
        img[m] = rng.integers(40, 160, 3)
    table = measure_cells(labels, None if ndim == 3 else img, scale=scale, unit="um")
    p = rng.dirichlet(np.ones(3), n)
    for j, c in enumerate(CLASSES):
        table[f"p_{c}"] = p[:, j]
    table["class"] = [CLASSES[j] for j in p.argmax(1)]
    table["uncertainty"] = -(p * np.log(p)).sum(1)
    return img, labels, table


@pytest.fixture
def dock(make_napari_viewer, tmp_path, qtbot):
    def _make(n=12, ndim=2, path=None):
        viewer = make_napari_viewer()
        img, labels, table = classified_field(n, ndim=ndim)
        if path is not None:
            from PIL import Image

            Image.fromarray(img).save(path)
            viewer.open(path, plugin="napari")
            table["source"] = str(path)
        elif ndim == 2:
            viewer.add_image(img, rgb=True, scale=(0.25, 0.25), name="field")
        layer = viewer.add_labels(
            labels,
            scale=(0.25,) * ndim,
            features=to_features(table),
            name="cells",
            metadata={"model": "toy 1.0"},
        )
        from napari_nucleus_ai.widgets.review import ReviewWidget

        w = ReviewWidget(viewer)
        w.open_outputs = False
        w.set_project(str(tmp_path / "project")) if path is None else None
        viewer.window.add_dock_widget(w, name="Review")
        qtbot.addWidget(w) if False else None
        return viewer, w, layer, table

    yield _make


def test_keys_review_every_cell_once_and_save(dock, qtbot, tmp_path):
    viewer, w, layer, table = dock(12)
    assert w.queue is not None and len(w.queue) == 12
    assert w.queue.classes == CLASSES + ["unidentified", "artefact"]
    first = w.queue.current
    row = table.set_index("label").loc[first]
    assert w.camera.center[-2:] == pytest.approx((row["centroid_y"], row["centroid_x"]))
    # number keys / Space through the real Qt shortcuts: one press per cell
    keys = w._shortcuts
    wrong = {}
    presses = 0
    while w.queue.unreviewed:
        cell = w.queue.current
        if cell % 4 == 0:
            keys["5"].activated.emit()  # artefact
            wrong[cell] = "artefact"
        else:
            keys["Space"].activated.emit()
        presses += 1
    assert presses == 12
    assert w.flush(10)
    store = AnnotationStore(tmp_path / "project")
    truth = dict(zip(table["label"], table["class"], strict=True)) | wrong
    assert store.labels(w.image_id) == truth
    hist = store.history(w.image_id)
    assert set(hist["model"]) == {"toy 1.0"}
    assert set(hist["action"]) <= {"confirm", "set"}
    assert (hist.loc[hist["label"] == "artefact", "action"] == "set").all()
    # saved rows are marked and the reviewed markers cover every cell
    assert w.table_model.pending == set()
    w.refresh_marks()
    assert len(viewer.layers["reviewed cells"].data) == 12
    assert "12 reviewed, 0 unreviewed" in w.counts.text()
    assert "all saved" in w.status.text()
    # layer features carry the final class, the prediction and the reviewed flag
    feats = layer.features.set_index("label")
    assert feats.loc[list(wrong)[0], "class"] == "artefact" and feats["reviewed"].all()
    # undo with the key goes back, recorded in the history
    keys["Ctrl+Z"].activated.emit()
    assert w.flush(10)
    last = list(w.queue.order)[-1] if False else None
    assert store.count(w.image_id) == 13 and len(store.labels(w.image_id)) == 11
    keys["Ctrl+Shift+Z"].activated.emit()
    assert w.flush(10) and len(store.labels(w.image_id)) == 12 and last is None


def test_another_annotator_s_labels_appear(dock, tmp_path):
    viewer, w, layer, table = dock(6)
    w.confirm()
    w.flush()
    other = AnnotationStore(tmp_path / "project", author="ben")  # a second annotator process
    last = w.queue.order[-1]
    other.set_label(w.image_id, last, "artefact")
    assert w.sync_from_store() == 1
    assert w.queue.final(last) == "artefact" and w.queue.is_reviewed(last)
    assert w.sync_from_store() == 0
    other.clear_label(w.image_id, last)
    assert w.sync_from_store() == 1 and not w.queue.is_reviewed(last)


def test_real_key_events_reach_the_dock(dock, qtbot):
    from qtpy.QtCore import Qt

    viewer, w, layer, _ = dock(6)
    win = viewer.window._qt_window
    win.show()
    win.activateWindow()
    qtbot.waitUntil(lambda: win.isActiveWindow(), timeout=3000)
    viewer.window._qt_viewer.canvas.native.setFocus()
    cell = w.queue.current
    qtbot.keyClick(win.focusWidget() or win, Qt.Key.Key_2)
    assert w.flush(10)
    assert w.queue.corrections == {cell: "monocyte"}


def test_filters_table_and_csv_export_as_shown(dock, tmp_path):
    viewer, w, layer, table = dock(16)
    w.filter_class.setCurrentText("monocyte")
    shown = w.table_model.df
    assert len(shown) == int((table["class"] == "monocyte").sum())
    assert w.queue.current in set(shown["label"])
    w.confirm()
    from qtpy.QtCore import Qt

    from napari_nucleus_ai.widgets import _review_outputs as outs

    out = outs.export_csv_dialog(w, str(tmp_path / "shown.csv"))
    csv = pd.read_csv(out)
    m = w.table_model
    assert list(csv.columns) == [
        m.headerData(c, Qt.Orientation.Horizontal) for c in range(m.columnCount())
    ]
    assert len(csv) == m.rowCount()
    for r in range(m.rowCount()):
        for c, name in enumerate(csv.columns):
            shown_text = m.data(m.index(r, c))
            v = csv.iat[r, c]
            if name == "reviewed":
                assert shown_text == ("yes" if v else "")
            elif isinstance(v, float):
                assert shown_text == ("" if np.isnan(v) else f"{v:.3f}")
            else:
                assert shown_text == str(v)
    w.unreviewed_only.setChecked(True)
    assert len(w.table_model.df) == len(shown) - 1
    w.min_unc.setValue(0.9)
    assert all(u >= 0.9 for u in w.table_model.df["uncertainty"])


def test_report_and_trainset_from_dock(dock, tmp_path):
    viewer, w, layer, table = dock(9)
    for _ in range(5):
        w.confirm()
    w.set_class("artefact")
    from napari_nucleus_ai.widgets import _review_outputs as outs

    paths = outs.write_report_for(w, tmp_path / "rep")
    html = paths["html"].read_text()
    assert "3 of 9 cells not reviewed" in html
    res = outs.export_trainset_dialog(w, str(tmp_path / "ts"), sync=True)
    assert res["files"] == 6 and res["kind"] == "crops"
    assert (tmp_path / "ts" / "artefact").is_dir()


def test_reopening_the_image_restores_cells_and_corrections(dock, tmp_path, qtbot):
    path = tmp_path / "data" / "field.png"
    path.parent.mkdir()
    viewer, w, layer, table = dock(8, path=path)
    assert w.store_path == path.parent / STORE_NAME
    assert w.image_id == "field.png"
    assert not w.store_path.exists()  # looking is free: the first correction creates the store
    w.set_class("monocyte")
    w.set_class("artefact")
    corrections = dict(w.queue.corrections)
    w.flush()
    viewer.layers.clear()
    assert w.queue is None
    viewer.open(path, plugin="napari")  # the image alone
    qtbot.waitUntil(
        lambda: any(ly.name.endswith("(restored)") for ly in viewer.layers), timeout=5000
    )
    restored = next(ly for ly in viewer.layers if ly.name.endswith("(restored)"))
    np.testing.assert_array_equal(restored.data, layer.data)
    assert w.layer is restored and w.queue.corrections == corrections
    feats = restored.features.set_index("label")
    for cell, lab in corrections.items():
        assert feats.loc[cell, "class"] == lab
    # predictions are back as they were
    assert feats["model_class"].tolist() == table.sort_values("label")["class"].tolist()
    # and the review resumes at the first unreviewed cell
    assert not w.queue.is_reviewed(w.queue.current)


def test_storm_like_3d_nuclei_in_nm(dock):
    viewer, w, layer, table = dock(5, ndim=3)
    cell = w.queue.current
    row = table.set_index("label").loc[cell]
    assert w.camera.center[-2:] == pytest.approx((row["centroid_y"], row["centroid_x"]))
    assert viewer.dims.point[0] == pytest.approx(row["centroid_z"], abs=0.25)
    w.confirm()
    w.refresh_marks()
    assert viewer.layers["reviewed cells"].data.shape == (1, 3)


def test_storm_nuclei_from_a_localization_file(make_napari_viewer, tmp_path):
    """STORM: labels in nm over a ThunderSTORM file; the store sits beside it, export gives files."""
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv
    from napari_nucleus_ai.widgets import _review_outputs as outs
    from napari_nucleus_ai.widgets.review import ReviewWidget

    rng = np.random.default_rng(0)
    xy = np.concatenate(
        [rng.uniform(100, 900, (300, 2)), rng.uniform([1100, 100], [1900, 900], (200, 2))]
    )
    locs = pd.DataFrame({"x_nm": xy[:, 0], "y_nm": xy[:, 1], "frame": np.arange(500)})
    csv = tmp_path / "storm" / "nuclei.csv"
    csv.parent.mkdir()
    write_thunderstorm_csv(locs, csv)
    labels = np.zeros((100, 200), np.int32)
    labels[10:90, 10:90] = 1
    labels[10:90, 110:190] = 2
    table = measure_cells(labels, scale=10.0, unit="nm")
    table["class"] = ["somatic", "hiPSC"]
    table["p_somatic"], table["p_hiPSC"] = [0.6, 0.3], [0.4, 0.7]
    viewer = make_napari_viewer()
    viewer.add_labels(
        labels,
        scale=(10.0, 10.0),
        features=to_features(table),
        name="nuclei",
        metadata={
            "source": str(csv),
            "model_card": {
                "classes": [
                    {"name": "hiPSC", "colour": "#00ff00"},
                    {"name": "somatic", "colour": "#ff0000"},
                ]
            },
        },
    )
    w = ReviewWidget(viewer)
    w.open_outputs = False
    assert w.store_path.parent == csv.parent and w.image_id == "nuclei.csv"
    # classes and colours from the classifier's model card (classifier layers carry it)
    assert w.queue.classes == ["hiPSC", "somatic", "unidentified", "artefact"]
    assert w.colors["hiPSC"] == "#00ff00"
    assert w.queue.current == 1  # the more uncertain nucleus first
    assert w.camera.center[-2:] == pytest.approx(
        (table.loc[0, "centroid_y"], table.loc[0, "centroid_x"])
    )
    w.press_class_key("1")
    w.confirm()
    res = outs.export_trainset_dialog(w, str(tmp_path / "ts"), sync=True)
    assert res["kind"] == "localizations" and res["counts"] == {"hiPSC": 2}
    w.detach()


def test_demo_step_reviews_the_classified_smear(make_napari_viewer):
    from napari_nucleus_ai.widgets._review_outputs import demo_review

    viewer = make_napari_viewer()
    _, labels, table = classified_field(10)
    card = {
        "modality": "brightfield_rgb",
        "classes": [{"name": c, "colour": "#123456"} for c in CLASSES],
    }
    viewer.add_labels(
        labels, features=to_features(table), name="smear classes", metadata={"model_card": card}
    )
    viewer.add_labels(
        labels,
        features=to_features(table),
        name="storm classes",
        metadata={"model_card": {**card, "modality": "storm"}},
    )
    w = demo_review(viewer, confirm=6)
    assert w.layer.name == "smear classes"
    assert w.queue.reviewed == 6 and w.store is not None
    assert len(w.store.labels(w.image_id)) == 6
    w.detach()


def test_dock_shows_the_current_cells_conformal_set(make_napari_viewer):
    viewer = make_napari_viewer()
    img, labels, table = classified_field(6)
    table["set"] = [
        "|".join(CLASSES[:2]) if i % 2 else CLASSES[int(np.argmax(p))]
        for i, p in enumerate(table[[f"p_{c}" for c in CLASSES]].to_numpy())
    ]
    viewer.add_image(img, rgb=True, scale=(0.25, 0.25), name="field")
    viewer.add_labels(labels, scale=(0.25, 0.25), features=to_features(table), name="cells")
    from napari_nucleus_ai.widgets.review import ReviewWidget

    w = ReviewWidget(viewer)
    w.open_outputs = False
    expected = dict(zip(table["label"], table["set"], strict=True))
    for _ in range(3):
        cell = w.queue.current
        assert f"set: <b>{expected[cell].replace('|', ' | ')}</b>" in w.info.text()
        w.step(1)
    m = w.table_model
    assert "set" in list(m.df.columns)
    r = m.row_of(cell)
    assert m.data(m.index(r, list(m.df.columns).index("set"))) == expected[cell]


def test_review_dock_with_eight_classes_fits_a_laptop(make_napari_viewer, tmp_path):
    """Issue 25 item 14: with the eight PBC classes' buttons, a long store path and every
    row shown, the dock needs at most ~290 px (a 1366 px laptop, two docks side by side)."""
    from napari_nucleus_ai.widgets.review import ReviewWidget

    names = ["basophil", "eosinophil", "erythroblast", "immature granulocyte", "lymphocyte",
             "monocyte", "neutrophil", "platelet"]  # fmt: skip
    img, labels, table = classified_field(12)
    table = table.drop(columns=[f"p_{c}" for c in CLASSES])
    p = np.random.default_rng(1).dirichlet(np.ones(len(names)), len(table))
    for j, c in enumerate(names):
        table[f"p_{c}"] = p[:, j]
    table["class"] = [names[j] for j in p.argmax(1)]
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.add_image(img, rgb=True, scale=(0.25, 0.25), name="field")
    viewer.add_labels(labels, scale=(0.25, 0.25), features=to_features(table), name="cells")
    w = ReviewWidget(viewer)
    w.open_outputs = False
    w.set_project(str(tmp_path / "a_long_project_folder_name_for_the_lab_s_smears"))
    viewer.window.add_dock_widget(w, name="Review")
    viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Classifier")  # stacked below
    for _ in range(20):
        QApplication.processEvents()
    assert w.class_grid.count() >= len(names)  # + artefact, unidentified
    assert w.scroll_area.widget().minimumSizeHint().width() <= 290 - 15
    assert not w.scroll_area.horizontalScrollBar().isVisible()
