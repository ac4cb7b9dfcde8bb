"""The Qt-free review queue: order, filters, one key per cell, undo/redo, counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.review.queue import ReviewQueue, apply_corrections, model_classes


def make_table(n=200, seed=0, classes=("lymphocyte", "monocyte", "neutrophil")):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(classes)), size=n)
    df = pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            "centroid_y": rng.uniform(0, 500, n),
            "centroid_x": rng.uniform(0, 500, n),
        }
    )
    for i, c in enumerate(classes):
        df[f"p_{c}"] = p[:, i]
    df["class"] = [classes[i] for i in p.argmax(1)]
    df["uncertainty"] = -(p * np.log(p)).sum(1)
    return df


def test_order_most_uncertain_first_and_classes():
    df = make_table(50)
    q = ReviewQueue(df)
    unc = [q.uncertainty(c) for c in q.order]
    assert unc == sorted(unc, reverse=True)
    assert q.current == q.order[0]
    assert q.classes == ["lymphocyte", "monocyte", "neutrophil", "unidentified", "artefact"]
    assert q.key_for("artefact") == "5" and q.class_for_key("1") == "lymphocyte"
    assert q.class_for_key("9") is None


def test_200_cells_one_key_each_when_model_right():
    df = make_table(200)
    q = ReviewQueue(df)
    presses = 0
    while q.unreviewed:
        q.confirm()
        presses += 1
        assert presses <= 200
    assert presses == 200
    assert q.corrections == dict(zip(df["label"], df["class"], strict=True))


def test_wrong_predictions_also_one_key_each():
    df = make_table(30)
    q = ReviewQueue(df)
    truth = {c: ("artefact" if c % 3 == 0 else q.predicted(c)) for c in q.order}
    presses = 0
    while q.unreviewed:
        c = q.current
        if truth[c] == q.predicted(c):
            q.confirm()
        else:
            q.set_class(q.class_for_key(q.key_for(truth[c])))
        presses += 1
    assert presses == 30 and q.corrections == truth
    counts = q.counts().set_index("class")
    assert counts.loc["artefact", "count"] == 10
    assert not counts.loc["artefact", "counted"]
    assert counts.loc[counts["counted"], "percent"].sum() == pytest.approx(100)


def test_undo_redo_moves_to_cell_and_returns_edits_to_persist():
    q = ReviewQueue(make_table(10))
    a = q.current
    e1 = q.set_class("monocyte")
    b = q.current
    assert b != a and e1.before is None and e1.after == "monocyte"
    q.set_class("artefact")
    u = q.undo()
    assert (u.cell, u.before, u.after, u.action) == (b, "artefact", None, "undo")
    assert q.current == b and not q.is_reviewed(b)
    u = q.undo()
    assert u.cell == a and u.after is None and q.corrections == {}
    assert q.undo() is None
    r = q.redo()
    assert (r.cell, r.after, r.action) == (a, "monocyte", "redo")
    assert q.corrections == {a: "monocyte"}
    q.set_class("lymphocyte")  # a new edit clears the redo stack
    assert not q.can_redo
    # relabelling a reviewed cell records what it replaced
    q.goto(a)
    e = q.set_class("neutrophil", advance=False)
    assert e.before == "lymphocyte" and q.current == a


def test_filters_and_navigation():
    df = make_table(60)
    q = ReviewQueue(df)
    q.set_filter(classes=["monocyte"])
    vis = q.visible()
    assert vis and all(q.final(c) == "monocyte" for c in vis)
    assert q.current == vis[0]
    assert q.next() == vis[1] and q.previous() == vis[0]
    assert q.previous() == vis[0]  # stays at the first
    q.set_filter(min_uncertainty=0.8, max_uncertainty=0.9)
    assert all(0.8 <= q.uncertainty(c) <= 0.9 for c in q.visible())
    q.set_filter()
    assert len(q.visible()) == 60
    first = q.first()
    q.set_class("artefact")
    q.set_filter(unreviewed_only=True)
    assert first not in q.visible() and len(q.visible()) == 59
    q.set_filter(classes=["artefact"])
    assert q.visible() == [first]


def test_existing_corrections_resume_at_first_unreviewed():
    df = make_table(20)
    order = ReviewQueue(df).order
    q = ReviewQueue(df, corrections={order[0]: "artefact", order[1]: "monocyte", 999: "x"})
    assert q.current == order[2] and q.reviewed == 2
    assert q.final(order[0]) == "artefact"
    tab = q.review_table()
    assert list(tab.columns) == [
        "label",
        "predicted",
        "p_predicted",
        "uncertainty",
        "class",
        "reviewed",
    ]
    assert tab["reviewed"].sum() == 2 and list(tab["label"]) == order


def test_without_predictions_fluorescence_or_storm_tables():
    # a bare cell table (no classifier yet): order by label, confirm -> unidentified
    df = pd.DataFrame({"label": [3, 1, 2], "centroid_y": [0.0, 1, 2], "centroid_x": [0.0, 1, 2]})
    q = ReviewQueue(df, classes=["somatic", "hiPSC"])
    assert q.order == [1, 2, 3]
    q.confirm()
    assert q.corrections == {1: "unidentified"}
    with pytest.raises(ValueError):
        q.set_class("nonsense")


def test_uncertainty_from_probabilities_when_column_missing():
    df = make_table(10).drop(columns=["uncertainty"])
    q = ReviewQueue(df)
    assert q.uncertainty(q.order[0]) == pytest.approx(1 - df.filter(like="p_").max(axis=1).min())
    assert model_classes(df) == ["lymphocyte", "monocyte", "neutrophil"]


def test_apply_corrections():
    df = make_table(5)
    out = apply_corrections(df, {2: "artefact"})
    assert out.loc[out["label"] == 2, "class"].item() == "artefact"
    assert out.loc[out["label"] == 2, "model_class"].item() == df.loc[1, "class"]
    assert out["reviewed"].tolist() == [False, True, False, False, False]
    # idempotent: applying again keeps the model's class
    again = apply_corrections(out, {3: "monocyte"})
    assert again["model_class"].tolist() == df["class"].tolist()
    assert again.loc[again["label"] == 2, "class"].item() == df.loc[1, "class"]
    from napari_nucleus_ai.review.queue import model_table

    pd.testing.assert_frame_equal(model_table(out)[df.columns], df, check_dtype=False)


def test_unidentified_cells_confirm_the_best_guess():
    # classifier tables: class is "unidentified" above the threshold, predicted is the top guess
    df = make_table(6)
    df["predicted"] = df["class"]
    df.loc[df["uncertainty"] >= df["uncertainty"].median(), "class"] = "unidentified"
    q = ReviewQueue(df)
    cell = q.current
    assert q.predicted(cell) == "unidentified"
    guess = df.set_index("label").loc[cell, "predicted"]
    assert q.suggestion(cell) == guess
    e = q.confirm()
    assert e.after == guess and e.action == "confirm"


def test_conformal_sets_in_the_review_table():
    df = make_table(6)
    df["set"] = ["lymphocyte", "lymphocyte|monocyte", "", None, "neutrophil", "monocyte"]
    q = ReviewQueue(df)
    assert q.prediction_set(2) == ["lymphocyte", "monocyte"]
    assert q.prediction_set(3) == [] and q.prediction_set(4) == []
    tab = q.review_table()
    assert list(tab.columns) == [
        "label",
        "predicted",
        "p_predicted",
        "uncertainty",
        "set",
        "class",
        "reviewed",
    ]
    by_cell = dict(zip(tab["label"], tab["set"], strict=True))
    assert by_cell[2] == "lymphocyte|monocyte" and by_cell[4] == ""
    assert ReviewQueue(make_table(3)).prediction_set(1) is None  # a model without sets
