"""Make docs/images/review_report.png: the one-page HTML differential report, rendered by Qt.

Run: ``xvfb-run -a .venv/bin/python benchmarks/report_screenshot.py``

Builds the two-field "slide" of ``tests/test_review_cli.py`` (saved sessions plus two
annotators' corrections), runs ``napari-nucleus-ai report`` on it and renders the HTML
page with Qt's rich-text engine (a browser shows the same page with the two tables side by side).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from qtpy.QtWidgets import QApplication, QTextBrowser

    from napari_nucleus_ai.cli import main as cli
    from test_review_cli import make_project

    d = Path(tempfile.mkdtemp(prefix="nucleus-ai-report-"))
    make_project(d)
    cli(["report", str(d / "proj"), "--title", "slide 7", "--out", str(d / "rep")])
    app = QApplication([])
    view = QTextBrowser()
    view.resize(900, 860)
    view.setHtml((d / "rep" / "report.html").read_text())
    view.show()
    for _ in range(10):
        app.processEvents()
    out = ROOT / "docs" / "images" / "review_report.png"
    view.grab().save(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
