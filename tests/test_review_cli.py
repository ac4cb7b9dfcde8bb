"""CLI: report and export-trainset from a store with saved review sessions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nucleus_ai.cli import main
from napari_nucleus_ai.review.session import save_session
from napari_nucleus_ai.review.store import AnnotationStore
from test_review_session import field_with_cells


def make_project(tmp_path):
    from PIL import Image

    store = AnnotationStore(tmp_path / "proj", author="ana")
    for k, name in enumerate(("f1.png", "f2.png")):
        img, labels, table = field_with_cells()
        table["class"] = ["myeloblast", "neutrophil", "neutrophil"] * 2
        Image.fromarray(img).save(tmp_path / "proj" / name)
        save_session(
            store,
            name,
            labels,
            table,
            scale=(0.5, 0.5),
            unit="um",
            classes=["myeloblast", "neutrophil"],
            model="toy 1",
            source=name,
        )
        store.set_label(name, 1, "artefact" if k == 0 else "myeloblast")
        store.set_label(name, 2, "neutrophil", author="ben")
    return store


def test_report_cli_slide(tmp_path, capsys):
    make_project(tmp_path)
    rc = main(
        [
            "report",
            str(tmp_path / "proj"),
            "--title",
            "slide 7",
            "--per-image",
            "--out",
            str(tmp_path / "rep"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    # f1: 1 artefact, 1 blast, 4 neutro; f2: 2 blasts, 4 neutro -> 3 / 11 blasts
    assert "slide 7: 12 cells, 4 reviewed, 8 unreviewed; blasts 27.3 %" in out
    csv = pd.read_csv(tmp_path / "rep" / "report.csv").set_index("class")
    assert csv.loc["neutrophil", "count"] == 8 and csv.loc["artefact", "count"] == 1
    assert len(list((tmp_path / "rep").glob("report-f*.html"))) == 2
    assert "ana, ben" in (tmp_path / "rep" / "report.html").read_text()


def test_report_cli_from_cells_csv(tmp_path, capsys):
    store = AnnotationStore(tmp_path, author="ana")
    store.set_label("cells.csv", 1, "lymphocyte")
    pd.DataFrame(
        {"label": [1, 2, 3], "class": ["monocyte"] * 3, "p_monocyte": 1.0, "p_lymphocyte": 0.0}
    ).to_csv(tmp_path / "cells.csv", index=False)
    assert main(["report", str(tmp_path), "--cells", str(tmp_path / "cells.csv")]) == 0
    out = capsys.readouterr().out
    assert "3 cells, 1 reviewed, 2 unreviewed" in out
    assert (tmp_path / "reports" / "report.png").exists()


def test_export_trainset_cli(tmp_path, capsys):
    make_project(tmp_path)
    rc = main(["export-trainset", str(tmp_path / "proj"), "--out", str(tmp_path / "ts")])
    assert rc == 0
    files = sorted(p.parent.name for p in (tmp_path / "ts").rglob("*.png"))
    assert files == ["artefact", "myeloblast", "neutrophil", "neutrophil"]
    rc = main(
        [
            "export-trainset",
            str(tmp_path / "proj"),
            "--out",
            str(tmp_path / "ts2"),
            "--image",
            "f2.png",
            "--include-predicted",
        ]
    )
    assert rc == 0 and len(list((tmp_path / "ts2").rglob("*.png"))) == 6
    assert "6 crops" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no corrections store" in err
    AnnotationStore(tmp_path)
    assert main(["export-trainset", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    assert "no reviewed images" in capsys.readouterr().err
    np.testing.assert_equal(1, 1)
