"""The corrections store: API, history, latest-wins, concurrency, bad files."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.review.store import (
    STORE_NAME,
    AnnotationStore,
    BackgroundWriter,
    image_id_for,
    store_for_data,
    store_path,
)


def test_public_api_latest_wins(tmp_path):
    store = AnnotationStore(tmp_path)
    assert store.path == tmp_path / STORE_NAME
    c = store.set_label("img", 5, "lymphocyte", author="ana")
    assert c.label == "lymphocyte" and c.previous is None and c.author == "ana"
    store.set_label("img", 5, "monocyte", author="ben", predicted="lymphocyte", probability=0.6)
    store.set_label("img", 6, "artefact", author="ana")
    store.set_label("other", 5, "neutrophil", author="ana")
    # a second handle (as another process would) sees everything
    again = AnnotationStore(tmp_path / STORE_NAME)
    assert again.labels("img") == {5: "monocyte", 6: "artefact"}
    assert again.labels("other") == {5: "neutrophil"}
    assert again.labels("nothing") == {}
    hist = again.history("img", 5)
    assert list(hist["label"]) == ["lymphocyte", "monocyte"]
    assert list(hist["author"]) == ["ana", "ben"]
    assert list(hist["previous"].fillna("-")) == ["-", "lymphocyte"]
    assert hist["predicted"].iloc[1] == "lymphocyte"
    assert hist["probability"].iloc[1] == pytest.approx(0.6)
    assert all(t.endswith("+00:00") for t in hist["time"])
    assert again.images() == ["img", "other"]


def test_clear_returns_cell_to_prediction_but_keeps_history(tmp_path):
    store = AnnotationStore(tmp_path, author="ana")
    store.set_label("img", 1, "blast")
    store.clear_label("img", 1)
    assert store.labels("img") == {}
    assert store.count("img") == 2
    assert list(store.history("img")["action"]) == ["set", "clear"]
    assert store.latest("img").empty


def test_batch_and_nan_probability(tmp_path):
    store = AnnotationStore(tmp_path / "x.db", author="ana")
    out = store.set_labels(
        "img", {1: "a", 2: "b"}, predictions={1: ("a", float("nan"), 0.2)}, action="confirm"
    )
    assert [c.cell_id for c in out] == [1, 2]
    latest = store.latest("img")
    assert list(latest["cell_id"]) == [1, 2]
    assert latest["probability"].isna().all()
    assert latest["uncertainty"].iloc[0] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        store.set_labels("img", {1: "a"}, action="bogus")


def test_wal_and_full_sync(tmp_path):
    store = AnnotationStore(tmp_path)
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_threads_write_concurrently(tmp_path):
    stores = [AnnotationStore(tmp_path, author=f"a{i}") for i in range(3)]

    def work(i):
        for k in range(40):
            stores[i].set_label("img", i * 1000 + k, f"c{i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(AnnotationStore(tmp_path).labels("img")) == 120


def test_image_registry(tmp_path):
    store = AnnotationStore(tmp_path)
    assert store.image_info("img") is None
    store.register_image("img", source="a.png", classes=["x", "y"])
    store.register_image("img", session="sessions/img")
    assert store.image_info("img") == {
        "source": "a.png",
        "classes": ["x", "y"],
        "session": "sessions/img",
    }
    assert "img" in store.images()


def test_paths_and_ids(tmp_path):
    data = tmp_path / "fields" / "f1.png"
    data.parent.mkdir()
    data.write_bytes(b"x")
    assert store_for_data(data) == data.parent.resolve() / STORE_NAME
    assert store_for_data(data, tmp_path / "proj") == tmp_path / "proj" / STORE_NAME
    assert store_path(tmp_path / "a.sqlite") == tmp_path / "a.sqlite"
    assert image_id_for(data, tmp_path) == "fields/f1.png"
    assert image_id_for(data, tmp_path / "elsewhere" / "s.sqlite").endswith("/fields/f1.png")
    assert image_id_for("a layer name", tmp_path) == "a layer name"


def test_not_a_database_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(InputError) as e:
        AnnotationStore(bad)
    assert "broken.sqlite" in str(e.value) and "\n" not in str(e.value)


def test_background_writer_reports_saved_after_durable(tmp_path):
    store = AnnotationStore(tmp_path, author="ana")
    saved = []

    def on_saved(corr, token):
        # by the time the UI hears "saved", another connection can read it
        assert AnnotationStore(tmp_path).labels("img").get(corr.cell_id) == corr.label
        saved.append(token)

    w = BackgroundWriter(store, on_saved=on_saved)
    for i in range(20):
        w.submit("img", i, "x", token=i, predicted="y")
    assert w.flush(10)
    assert w.pending == 0
    w.close()
    assert saved == list(range(20))


def test_background_writer_reports_errors(tmp_path):
    store = AnnotationStore(tmp_path)
    errors = []
    w = BackgroundWriter(store, on_error=lambda e, tok: errors.append((type(e), tok)))
    store.close()
    w.submit("img", 1, "x", token="t")
    assert w.flush(10)
    w.close()
    assert errors and errors[0][1] == "t"
    assert issubclass(errors[0][0], sqlite3.Error)
