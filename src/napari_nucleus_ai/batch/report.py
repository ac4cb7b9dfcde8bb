"""``summary.csv`` and a self-contained ``report.html`` for a batch run."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from napari_nucleus_ai.core.files import atomic_write


def write_summary(summary: pd.DataFrame, out) -> Path:
    """One row per input (``path, status, error, n_cells, n_<class>...``), written atomically.

    A failed input counted nothing: its ``n_*`` cells are empty, not 0.
    """
    path = Path(out) / "summary.csv"
    if "status" in summary.columns and (summary["status"] == "failed").any():
        summary = summary.copy()
        failed = (summary["status"] == "failed").to_numpy()
        for c in [c for c in summary.columns if c.startswith("n_")]:
            summary[c] = summary[c].astype(object)
            summary.loc[failed, c] = None
    with atomic_write(path, "w", newline="") as fh:
        summary.to_csv(fh, index=False)
    return path


def _table(df: pd.DataFrame, out: Path) -> str:
    cols = [c for c in df.columns if c not in ("settings", "size", "mtime_ns", "stem")]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            text = "" if pd.isna(v) else str(v)
            if c.endswith("_file") and text and (out / text).exists():
                cells.append(f'<td><a href="{html.escape(text)}">{html.escape(text)}</a></td>')
            else:
                cells.append(f"<td>{html.escape(text)}</td>")
        cls = ' class="failed"' if r.get("status") == "failed" else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_report(summary: pd.DataFrame, out, settings, seconds: float, dashboard, workers) -> Path:
    """A one-page HTML report: totals, per-class counts, throughput, failures, every input."""
    out = Path(out)
    ok = summary[summary["status"] == "ok"] if len(summary) else summary
    failed = summary[summary["status"] == "failed"] if len(summary) else summary
    resumed = int(summary.get("resumed", pd.Series(dtype=bool)).fillna(False).sum())
    counts = {
        c[2:]: int(summary[c].sum())
        for c in summary.columns
        if c.startswith("n_") and c != "n_cells"
    }
    mpx = 0.0
    if {"height", "width"} <= set(ok.columns):
        fresh = ok[~ok.get("resumed", pd.Series(False, index=ok.index)).fillna(False).astype(bool)]
        mpx = float((fresh["height"] * fresh["width"]).sum()) / 1e6
    n_fresh = len(ok) - resumed + len(failed)
    rate = n_fresh / seconds if seconds > 0 else float("nan")
    settings_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in vars(settings).items()
    )
    class_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in counts.items()
    )
    failures = (
        "<ul>" + "".join(f"<li>{html.escape(str(e))}</li>" for e in failed["error"]) + "</ul>"
        if len(failed)
        else "<p>none</p>"
    )
    dash = (
        f'<a href="{html.escape(dashboard)}">{html.escape(dashboard)}</a>' if dashboard else "n/a"
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>napari-nucleus-ai batch report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 90%; }}
tr.failed td {{ background: #fde2e2; }} .big {{ font-size: 130%; }}
</style></head><body>
<h1>Batch report</h1>
<p>{datetime.now(timezone.utc).isoformat(timespec="seconds")} &middot; output folder
<code>{html.escape(str(out))}</code> &middot; Dask dashboard {dash} (live only during the run)</p>
<p class="big">{len(summary)} inputs: <b>{len(ok)} ok</b> ({resumed} from an earlier run),
<b>{len(failed)} failed</b>; {int(ok["n_cells"].sum()) if len(ok) else 0} cells.</p>
<p>{n_fresh} inputs processed in {seconds:.1f} s on {workers} workers:
{rate:.3f} inputs/s, {mpx / seconds if seconds else 0:.2f} megapixels/s.</p>
<h2>Cells per class</h2>{("<table>" + class_rows + "</table>") if counts else "<p>no model given</p>"}
<h2>Failures</h2>{failures}
<h2>Settings</h2><table>{settings_rows}</table>
<h2>Inputs</h2>{_table(summary, out)}
<p>summary.csv has the same rows. Re-running the same command skips the inputs marked ok.</p>
</body></html>
"""
    path = out / "report.html"
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path
