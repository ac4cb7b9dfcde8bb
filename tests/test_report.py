"""Differential count report: counts, percentages, blasts, chart, HTML, CSV."""

from __future__ import annotations

import pandas as pd
import pytest

from napari_nucleus_ai.review.counts import differential_counts, is_blast, is_counted
from napari_nucleus_ai.review.report import build_report, export_table_csv, write_report


def table(classes):
    return pd.DataFrame({"label": range(1, len(classes) + 1), "class": classes})


def test_blast_and_counted_names():
    assert (
        is_blast("myeloblast") and is_blast("MYO") and is_blast("MOB") and is_blast("Lymphoblast")
    )
    assert not is_blast("erythroblast") and not is_blast("MYB") and not is_blast("lymphocyte")
    assert not is_counted("artefact") and not is_counted("platelet") and not is_counted("KSC")
    assert (
        not is_counted("erythroblast") and is_counted("neutrophil") and is_counted("unidentified")
    )


def test_differential_counts_percent_of_counted():
    df = differential_counts(["a", "a", "b", "artefact", None], ["a", "b", "c"])
    d = df.set_index("class")
    assert list(df["class"]) == ["a", "b", "c", "artefact", "unidentified"]
    assert d.loc["a", "count"] == 2 and d.loc["c", "count"] == 0
    assert d.loc["a", "percent"] == pytest.approx(50.0)  # 2 of 4 counted (artefact excluded)
    assert d.loc["unidentified", "count"] == 1


def test_slide_report_with_corrections(tmp_path):
    t1 = table(["myeloblast"] * 3 + ["neutrophil"] * 5 + ["platelet"] * 2)
    t2 = table(["neutrophil"] * 10)
    rep = build_report(
        {"f1": t1, "f2": t2},
        {"f1": {1: "artefact"}, "f2": {1: "myeloblast", 2: "neutrophil"}},
        ["myeloblast", "neutrophil", "platelet"],
        title="slide A",
        authors=["ana", "ben", "ana"],
        models=["smear-cnn 1.0"],
    )
    c = rep.counts.set_index("class")
    # f1: 2 blasts, 5 neutro, 2 plt, 1 artefact; f2: 1 blast, 9 neutro
    assert c.loc["myeloblast", "count"] == 3 and c.loc["neutrophil", "count"] == 14
    assert rep.counted == 17 and rep.total == 20
    assert rep.blast_percent == pytest.approx(100 * 3 / 17)
    assert rep.reviewed == 3 and rep.unreviewed == 17
    assert c.loc["myeloblast", "reviewed"] == 1 and c.loc["artefact", "reviewed"] == 1
    assert rep.authors == ["ana", "ben"]
    assert list(rep.per_image["unreviewed"]) == [9, 8]
    paths = write_report(rep, tmp_path / "out", "slideA")
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = paths["html"].read_text()
    assert "slide A" in page and "17 of 20 cells not reviewed" in page
    assert "data:image/png;base64," in page and "17.6 %" in page and "<td>f2</td>" in page
    csv = pd.read_csv(paths["csv"]).set_index("class")
    assert csv.loc["blasts", "percent"] == pytest.approx(17.65, abs=0.01)
    assert csv.loc["unreviewed", "count"] == 17
    assert csv.loc["total (counted)", "count"] == 17


def test_all_reviewed_and_empty(tmp_path):
    rep = build_report({"x": table(["a", "b"])}, {"x": {1: "a", 2: "b"}}, ["a", "b"])
    assert (
        rep.unreviewed == 0
        and "All cells reviewed" in write_report(rep, tmp_path)["html"].read_text()
    )
    empty = build_report({"x": table([])}, {}, ["a"])
    assert empty.total == 0 and empty.blast_percent == 0
    assert write_report(empty, tmp_path, "e")["png"].exists()


def test_export_table_exactly(tmp_path):
    df = pd.DataFrame({"label": [3, 1], "class": ["b", "a"], "uncertainty": [0.5, 0.25]})
    p = export_table_csv(df, tmp_path / "t.csv")
    back = pd.read_csv(p)
    pd.testing.assert_frame_equal(back, df)


def test_expected_calibration_error_bins():
    import numpy as np

    from napari_nucleus_ai.models.uncertainty import expected_calibration_error

    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 1.0])
    ok = np.array([True, True, False, False, True, False, True])
    ece, bins = expected_calibration_error(conf, ok, 10, return_bins=True)
    # bin 9 (0.9-1]: 5 items, conf 0.96, acc 0.6; bin 5: 2 items, conf 0.55, acc 0.5
    assert ece == pytest.approx((5 * abs(0.6 - 0.96) + 2 * abs(0.5 - 0.55)) / 7)
    assert bins["count"].tolist() == [0] * 5 + [2, 0, 0, 0, 5]
    assert np.isnan(bins["accuracy"][0]) and bins["accuracy"][9] == pytest.approx(0.6)
    assert expected_calibration_error([0.7, 0.7], [True, True], 15) == pytest.approx(0.3)
    assert np.isnan(expected_calibration_error([], []))


def test_report_reliability_of_reviewed_cells(tmp_path):
    """ECE from the model's probabilities against the annotators' classes, reviewed cells only."""
    import json

    t = table(["a"] * 6 + ["b"] * 4)
    t["p_a"] = [0.9] * 6 + [0.2] * 4
    t["p_b"] = 1 - t["p_a"]
    # reviewed: 4 of the model's 'a' (0.9) - 2 agreed, 1 -> b, 1 -> artefact; 2 'b' (0.8) agreed
    corrections = {1: "a", 2: "a", 3: "b", 4: "artefact", 7: "b", 8: "b"}
    rep = build_report({"img": t}, {"img": corrections}, ["a", "b"])
    cal = rep.calibration
    assert cal["n"] == 6 and cal["n_bins"] == 10
    assert cal["accuracy"] == pytest.approx(4 / 6)
    assert cal["ece"] == pytest.approx((4 * abs(0.5 - 0.9) + 2 * abs(1.0 - 0.8)) / 6)
    assert cal["bins"]["count"][9] == 4 and cal["bins"]["count"][8] == 2
    paths = write_report(rep, tmp_path, "r")
    assert paths["reliability"].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths["calibration"].read_text())["ece"] == pytest.approx(cal["ece"])
    assert "Calibration" in paths["html"].read_text() and "ECE 0.333" in paths["html"].read_text()
    # no probabilities, or nothing reviewed: no calibration, no diagram
    assert build_report({"img": table(["a", "b"])}, {"img": {1: "a"}}).calibration is None
    none = build_report({"img": t}, {}, ["a", "b"])
    assert none.calibration is None and "reliability" not in write_report(none, tmp_path / "n")
