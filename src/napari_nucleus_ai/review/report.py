"""Differential count report: counts and percentages per class, blasts, bar chart, HTML.

Qt-free. The review dock shows :func:`differential_counts` live; ``report``
(CLI) and the dock's *Report* button write :func:`write_report` files for one
image or a whole slide (several fields). A cell's class is the annotator's label
when there is one, else the model's prediction; cells without a label are
counted as *unreviewed* so a preliminary report is never mistaken for a
signed-off one.

Percentages are of the *counted* cells: every class except artefacts and the
non-leukocyte classes a differential reports per 100 counted cells instead
(platelets, erythroblasts/NRBC, smudge cells), as in a manual differential.

Where the cell table has the model's probabilities (``p_<class>``), the report also says
how well calibrated the model was on the *reviewed* cells: a reliability diagram (the
model's confidence in its top class against how often the annotator agreed, in
:data:`CALIBRATION_BINS` equal-width bins) and the expected calibration error
(:func:`~napari_nucleus_ai.models.uncertainty.expected_calibration_error`). A cell the
annotator put in a class the model does not have (an artefact...) counts as a wrong
prediction. The review queue shows uncertain cells first, so reviewed cells are harder
than the average cell: read the ECE as that of the cells reviewed.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.review.counts import differential_counts, is_blast

#: Bins of the reliability diagram and the ECE (equal width over confidence 0-1).
CALIBRATION_BINS = 10


@dataclass
class Report:
    """A differential count over one image or several (a slide)."""

    title: str
    counts: pd.DataFrame
    per_image: pd.DataFrame
    total: int
    counted: int
    reviewed: int
    unreviewed: int
    blast_classes: list[str]
    blast_percent: float
    authors: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    )
    #: Calibration on the reviewed cells (:func:`calibration`); ``None`` without probabilities.
    calibration: dict | None = None


def build_report(
    tables: Mapping[str, pd.DataFrame],
    corrections: Mapping[str, Mapping[int, str]] | None = None,
    classes: Sequence[str] = (),
    *,
    title: str | None = None,
    blast_classes: Sequence[str] | None = None,
    authors: Sequence[str] = (),
    models: Sequence[str] = (),
) -> Report:
    """Count final classes over images.

    Parameters
    ----------
    tables : mapping image id -> cell table
        Tables with the model's ``class`` (or none); one per field of the slide.
    corrections : mapping image id -> {cell: label}
        The annotators' labels (e.g. ``AnnotationStore.labels(image_id)``).
    classes : sequence of str
        Class order for the report (the model's classes; extras are appended).
    blast_classes : sequence of str, optional
        Classes counted as blasts (default: :func:`is_blast` on every class seen).
    """
    from napari_nucleus_ai.review.queue import apply_corrections, review_classes

    corrections = corrections or {}
    finals, per_image = [], []
    for image_id, table in tables.items():
        t = apply_corrections(table, corrections.get(image_id, {}))
        finals.append(t)
        per_image.append({"image": image_id, "cells": len(t), "reviewed": int(t["reviewed"].sum())})
    allcells = (
        pd.concat(finals, ignore_index=True)
        if finals
        else pd.DataFrame({"class": [], "reviewed": []})
    )
    counts = differential_counts(allcells["class"].tolist(), review_classes(classes))
    reviewed_by_class = (
        allcells[allcells["reviewed"].astype(bool)]["class"].astype(str).value_counts()
    )
    counts["reviewed"] = [int(reviewed_by_class.get(c, 0)) for c in counts["class"]]
    if blast_classes is None:
        blast_classes = [c for c in counts["class"] if is_blast(c)]
    blast_classes = [str(c) for c in blast_classes]
    counted = int(counts.loc[counts["counted"], "count"].sum())
    blasts = int(counts.loc[counts["class"].isin(blast_classes) & counts["counted"], "count"].sum())
    per = pd.DataFrame(per_image, columns=["image", "cells", "reviewed"])
    per["unreviewed"] = per["cells"] - per["reviewed"]
    total = int(len(allcells))
    reviewed = int(allcells["reviewed"].astype(bool).sum()) if total else 0
    return Report(
        title=title or (next(iter(tables)) if len(tables) == 1 else f"{len(tables)} images"),
        counts=counts,
        per_image=per,
        total=total,
        counted=counted,
        reviewed=reviewed,
        unreviewed=total - reviewed,
        blast_classes=blast_classes,
        blast_percent=100.0 * blasts / counted if counted else 0.0,
        authors=sorted({str(a) for a in authors if a}),
        models=sorted({str(m) for m in models if m}),
        calibration=calibration(allcells),
    )


def calibration(cells: pd.DataFrame, n_bins: int = CALIBRATION_BINS) -> dict | None:
    """The model's confidence against the annotators' truth on the reviewed cells.

    Parameters
    ----------
    cells : DataFrame
        A table after :func:`~napari_nucleus_ai.review.queue.apply_corrections`
        (``class`` final, ``reviewed``) with the model's ``p_<class>`` columns.

    Returns
    -------
    dict or None
        ``n`` (reviewed cells with probabilities), ``n_bins``, ``ece``, ``accuracy``,
        ``mean_confidence`` and ``bins`` (lists: ``lower``, ``upper``, ``count``,
        ``confidence``, ``accuracy``; ``None`` in empty bins). ``None`` when the table
        has no probabilities or no reviewed cell.
    """
    from napari_nucleus_ai.models.uncertainty import expected_calibration_error

    pcols = [c for c in cells.columns if str(c).startswith("p_")]
    if not pcols or "reviewed" not in cells:
        return None
    done = cells[cells["reviewed"].astype(bool)]
    probs = done[pcols].to_numpy(float)
    keep = np.isfinite(probs).all(1)
    if not keep.any():
        return None
    probs = probs[keep]
    names = np.array([c[2:] for c in pcols])
    predicted = names[probs.argmax(1)]
    truth = done["class"].astype(str).to_numpy()[keep]
    conf, ok = probs.max(1), predicted == truth
    ece, bins = expected_calibration_error(conf, ok, n_bins, return_bins=True)
    return {
        "n": int(len(conf)),
        "n_bins": int(n_bins),
        "ece": ece,
        "accuracy": float(ok.mean()),
        "mean_confidence": float(conf.mean()),
        "bins": {
            k: [None if not np.isfinite(v) else float(v) for v in np.asarray(a, float)]
            if k in ("confidence", "accuracy")
            else np.asarray(a).tolist()
            for k, a in bins.items()
        },
    }


def reliability_png(report: Report) -> bytes | None:
    """The reliability diagram of ``report.calibration`` as PNG bytes (None without one)."""
    cal = report.calibration
    if not cal:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    b = cal["bins"]
    lower, upper = np.array(b["lower"]), np.array(b["upper"])
    acc = np.array([np.nan if v is None else v for v in b["accuracy"]], float)
    conf = np.array([np.nan if v is None else v for v in b["confidence"]], float)
    count = np.array(b["count"])
    fig = Figure(figsize=(4.6, 4.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    filled = count > 0
    ax.bar(
        lower[filled],
        acc[filled],
        width=(upper - lower)[filled],
        align="edge",
        color="#2171b5",
        edgecolor="white",
        label="agreed with the annotator",
    )
    ax.bar(
        lower[filled],
        conf[filled] - acc[filled],
        bottom=acc[filled],
        width=(upper - lower)[filled],
        align="edge",
        color="none",
        edgecolor="#cb181d",
        hatch="//",
        label="gap to the confidence",
    )
    for lo, hi, a, n in zip(lower[filled], upper[filled], acc[filled], count[filled], strict=True):
        ax.text((lo + hi) / 2, min(a, 0.92) + 0.02, str(int(n)), ha="center", fontsize=7)
    ax.plot([0, 1], [0, 1], "--", color="#666", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("model confidence (probability of its top class)")
    ax.set_ylabel("fraction the annotator agreed with")
    ax.set_title(f"reliability on {cal['n']} reviewed cells: ECE {cal['ece']:.3f}", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def calibration_text(report: Report) -> str:
    """One line on the calibration (``""`` when the report has none)."""
    cal = report.calibration
    if not cal:
        return ""
    few = "; few cells, a rough estimate" if cal["n"] < 50 else ""
    return (
        f"ECE {cal['ece']:.3f} on {cal['n']} reviewed cells ({cal['n_bins']} bins): "
        f"mean confidence {cal['mean_confidence']:.2f}, agreed with the annotator "
        f"{cal['accuracy']:.2f}{few}"
    )


def bar_chart_png(report: Report) -> bytes:
    """A horizontal bar chart of the counts (reviewed part darker), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    df = report.counts[report.counts["count"] > 0]
    if df.empty:
        df = report.counts
    n = max(len(df), 1)
    fig = Figure(figsize=(7, 0.45 * n + 1.4), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(df)))[::-1]
    ax.barh(y, df["count"], color="#9ecae1", label="model prediction (unreviewed)")
    ax.barh(y, df["reviewed"], color="#2171b5", label="reviewed")
    for yi, (_, row) in zip(y, df.iterrows(), strict=True):
        text = f"{row['count']}  ({row['percent']:.1f} %)" if row["counted"] else f"{row['count']}"
        ax.text(row["count"], yi, " " + text, va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(df["class"], fontsize=9)
    ax.set_xlabel("cells")
    ax.set_xlim(0, max(1, df["count"].max()) * 1.3)
    ax.set_title(
        f"{report.title}: {report.total} cells, {report.unreviewed} unreviewed", fontsize=10
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def report_html(report: Report, png: bytes | None = None, reliability: bytes | None = None) -> str:
    """A self-contained one-page HTML summary (chart and reliability diagram embedded)."""
    png = bar_chart_png(report) if png is None else png
    reliability = reliability_png(report) if reliability is None else reliability
    e = html.escape
    status = (
        f"<p class='warn'>Preliminary: {report.unreviewed} of {report.total} cells not reviewed yet.</p>"
        if report.unreviewed
        else "<p class='ok'>All cells reviewed.</p>"
    )
    rows = "".join(
        f"<tr><td>{e(str(r['class']))}</td><td>{r['count']}</td>"
        f"<td>{(format(r['percent'], '.1f') + ' %') if r['counted'] else 'not counted'}</td>"
        f"<td>{r['reviewed']}</td></tr>"
        for _, r in report.counts.iterrows()
    )
    per = ""
    if len(report.per_image) > 1:
        per = (
            "<h2>Images</h2><table><tr><th>image</th><th>cells</th><th>reviewed</th></tr>"
            + "".join(
                f"<tr><td>{e(str(r['image']))}</td><td>{r['cells']}</td><td>{r['reviewed']}</td></tr>"
                for _, r in report.per_image.iterrows()
            )
            + "</table>"
        )
    facts = [
        ("cells", report.total),
        ("counted in the differential", report.counted),
        ("reviewed", report.reviewed),
        ("unreviewed", report.unreviewed),
        (
            "blasts",
            f"{report.blast_percent:.1f} % ({', '.join(report.blast_classes) or 'no blast class'})",
        ),
        ("annotators", ", ".join(report.authors) or "-"),
        ("model", ", ".join(report.models) or "-"),
        ("generated", report.created),
    ]
    if report.calibration:
        facts.append(("calibration (reviewed cells)", calibration_text(report)))
    facts_html = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    img = base64.b64encode(png).decode("ascii")
    calib = ""
    if reliability:
        calib = (
            "<h2>Calibration</h2><p>The model's confidence in its top class against how often "
            "the annotator agreed, on the reviewed cells (bar labels: cells per bin). Bars "
            "below the diagonal: the model was over-confident. Reviewed cells are the "
            "uncertain ones first, so this describes them rather than every cell.</p>"
            '<img alt="reliability diagram" src="data:image/png;base64,'
            + base64.b64encode(reliability).decode("ascii")
            + '" style="max-width:60%">'
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Differential count: {e(report.title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 900px; margin: 1.5em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 0.9em; }}
.warn {{ color: #a63603; font-weight: bold; }} .ok {{ color: #006d2c; }}
.cols {{ display: flex; gap: 2em; align-items: flex-start; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Differential count: {e(report.title)}</h1>
{status}
<div class="cols"><table>{facts_html}</table>
<table><tr><th>class</th><th>count</th><th>percent</th><th>reviewed</th></tr>{rows}</table></div>
<img alt="bar chart of counts per class" src="data:image/png;base64,{img}" style="max-width:100%">
{calib}
{per}
<p style="font-size:0.8em;color:#666">napari-nucleus-ai differential report. Percentages are per 100
counted cells; artefacts, platelets, erythroblasts and smudge cells are listed but not counted.
Unreviewed cells carry the model's prediction.</p>
</body></html>
"""


def write_report(report: Report, out: str | os.PathLike, stem: str = "report") -> dict[str, Path]:
    """Write ``<stem>.csv`` (counts), ``<stem>.png`` (chart) and ``<stem>.html`` into ``out``;
    with a calibration, also ``<stem>-reliability.png`` and ``<stem>-calibration.json``
    (the ECE and the diagram's bins)."""
    import json

    from napari_nucleus_ai.core.files import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{stem}.{k}" for k in ("csv", "png", "html")}
    png = bar_chart_png(report)
    with atomic_write(paths["png"], "wb") as fh:
        fh.write(png)
    reliability = reliability_png(report)
    if reliability:
        paths["reliability"] = out / f"{stem}-reliability.png"
        with atomic_write(paths["reliability"], "wb") as fh:
            fh.write(reliability)
        paths["calibration"] = out / f"{stem}-calibration.json"
        with atomic_write(paths["calibration"], "w", encoding="utf-8") as fh:
            json.dump(report.calibration, fh, indent=1, allow_nan=False)
    with atomic_write(paths["html"], "w", encoding="utf-8") as fh:
        fh.write(report_html(report, png, reliability))
    table = report.counts.copy()
    table.loc[len(table)] = {
        "class": "total (counted)",
        "count": report.counted,
        "percent": 100.0 if report.counted else 0.0,
        "counted": True,
        "reviewed": int(table.loc[table["counted"], "reviewed"].sum()),
    }
    extra = pd.DataFrame(
        [
            {"class": "blasts", "count": None, "percent": report.blast_percent},
            {"class": "unreviewed", "count": report.unreviewed, "percent": None},
        ]
    )
    table = pd.concat([table, extra], ignore_index=True)
    with atomic_write(paths["csv"], "w", newline="") as fh:
        table.to_csv(fh, index=False, float_format="%.2f")
    return paths


def export_table_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a table exactly as given (rows, order, columns) as CSV, atomically."""
    from napari_nucleus_ai.core.files import atomic_write

    with atomic_write(path, "w", newline="") as fh:
        table.to_csv(fh, index=False)
    return Path(path)
