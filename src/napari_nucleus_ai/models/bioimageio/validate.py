"""Format validation of a bioimage.io package with ``bioimageio.spec``, offline.

The library is the optional extra ``napari-nucleus-ai[bioimageio]``; it is imported only
inside :func:`validate_bioimageio`.
"""

from __future__ import annotations

from pathlib import Path

from napari_nucleus_ai.models.bioimageio.source import read_rdf_at


def validate_bioimageio(path, known_urls=()) -> tuple[str, str]:
    """``(status, one line)`` of ``bioimageio.spec``'s format validation of a package.

    Offline: local files are read and their SHA-256 checked (``perform_io_checks``); the
    only remote references an export holds, the citation URLs, are passed to the library
    as ``known_files`` so it does not request them (DOIs are checked by pattern only).
    Raises ImportError without bioimageio.spec.
    """
    import bioimageio.spec as spec  # noqa: F401 - ImportError when the extra is missing
    from bioimageio.spec import load_description

    path = Path(path)
    known = {u: None for u in known_urls}
    if not known:
        known = {u: None for u in known_urls_of(read_rdf_at(path))}
    descr = load_description(
        path, format_version="discover", perform_io_checks=True, known_files=known
    )
    summary = descr.validation_summary
    errors = [f"{_where(e.loc)}{_clip(e.msg)}" for e in summary.errors]
    warnings = [
        f"{_where(w.loc)}{w.msg}"
        for d in summary.details
        for w in d.warnings
        if getattr(w, "severity", 30) >= 30
    ]
    if errors:
        return "failed", " ".join("; ".join(errors[:3]).split())[:400]
    note = f" ({len(warnings)} warning(s): {'; '.join(warnings[:2])})" if warnings else ""
    return str(summary.status), " ".join(
        f"bioimageio.spec {spec_version()}: {summary.status}{note}".split()
    )[:400]


def _where(loc) -> str:
    return f"{'.'.join(map(str, loc))}: " if loc else ""


def _clip(msg: str, n: int = 160) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= n else msg[: n - 3] + "..."


def known_urls_of(rdf: dict) -> list[str]:
    """The citation URLs of ``rdf``: the only remote references an export holds."""
    return [c["url"] for c in rdf.get("cite", []) if "url" in c]


def have_bioimageio_spec() -> bool:
    """True when the optional ``bioimageio.spec`` library can be imported."""
    import importlib.util

    try:
        return importlib.util.find_spec("bioimageio.spec") is not None
    except (ImportError, ValueError):
        return False


def spec_version() -> str:
    """The installed ``bioimageio.spec`` version, or ``"?"``."""
    try:
        from importlib.metadata import version

        return version("bioimageio.spec")
    except Exception:  # noqa: BLE001
        return "?"
