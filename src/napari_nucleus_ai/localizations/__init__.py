"""STORM / SMLM localization tables: detect, read, normalise, write (Qt-free).

Public API
----------
:func:`read_localizations`
    Any supported file -> :class:`LocalizationTable` (positions in nm).
:func:`sniff`, :func:`describe`, :func:`read_layers`
    The file-family contract of :mod:`napari_nucleus_ai.io`.
:func:`write_thunderstorm_csv`, :func:`write_nstorm_txt`
    Writers other tools read back.

Formats are recognised by content (:mod:`.detect`): ThunderSTORM CSV, Nikon N-STORM
TXT, Picasso HDF5 (+ YAML), SMAP ``_sml.mat``, DECODE ``.h5``/``.csv``, ShareLoc
``.smlm``, Zeiss Elyra TXT, ONI Nanoimager CSV, rapidSTORM TXT (also tracked), Bruker
Vutara CSV, storm-analysis HDF5, Insight3 ``.bin``, vLUME and SMLM-challenge CSVs,
and any delimited table (``#`` comment lines skipped, gzip-compressed or not) through
column aliases or a ``mapping``. :func:`.options.reading_options` sets a camera pixel
and a mapping for every read of a run (the CLI's ``--camera-pixel`` / ``--columns``).
"""

from __future__ import annotations

import os

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.detect import FORMATS, detect_format

#: formats whose positions are not named columns of a text table (``--columns`` ignores them)
BINARY_FORMATS = (
    "picasso",
    "decode-h5",
    "smap",
    "smlm",
    "hdf5-bad",
    "storm-analysis",
    "insight3",
)

# Sniffing must stay cheap (the io dispatcher asks this family first for every file):
# pandas-based modules are imported on first use, not here.
_LAZY = {
    "STANDARD": ".table",
    "LocalizationTable": ".table",
    "bounds_nm": ".table",
    "from_dataframe": ".table",
    "standard_columns": ".table",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)


def write_thunderstorm_csv(df, path) -> str:
    """Write localizations as a ThunderSTORM CSV; see :func:`.thunderstorm.write_thunderstorm_csv`."""
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv as write

    return write(df, path)


def write_nstorm_txt(df, path) -> str:
    """Write localizations as an N-STORM TXT; see :func:`.nstorm.write_nstorm_txt`."""
    from napari_nucleus_ai.localizations.nstorm import write_nstorm_txt as write

    return write(df, path)


__all__ = [
    "FORMATS",
    "STANDARD",
    "LocalizationTable",
    "bounds_nm",
    "describe",
    "detect_format",
    "from_dataframe",
    "read_layers",
    "read_localizations",
    "read_positions",
    "reader_name",
    "sniff",
    "write_nstorm_txt",
    "write_thunderstorm_csv",
]


#: the reader of each format, ``module:function`` (modules imported on first read)
READERS = {
    "storm-analysis": "stormanalysis:read_storm_analysis",
    "insight3": "stormanalysis:read_insight3",
    "vlume": "generic:read_vlume",
    "smlm-challenge": "generic:read_smlm_challenge",
    "thunderstorm": "thunderstorm:read",
    "nstorm": "nstorm:read",
    "elyra": "vendors:read_elyra",
    "oni": "vendors:read_oni",
    "vutara": "vendors:read_vutara",
    "rapidstorm": "vendors:read_rapidstorm",
    "decode-csv": "generic:read_decode_csv",
    "csv": "generic:read_csv_table",
    "picasso": "binary:read_picasso",
    "decode-h5": "binary:read_decode_h5",
    "smap": "binary:read_smap",
    "smlm": "binary:read_smlm",
    "hdf5-bad": "binary:read_bad_hdf5",
}


def _reader(fmt: str):
    """The reader function of ``fmt`` (importing only its module)."""
    import importlib

    module, function = READERS[fmt].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def sniff(path) -> bool:
    """True when ``path`` looks like a localization file (content check; never raises).

    With a ``--columns`` mapping in force (:mod:`.options`) any delimited text table is
    taken too: the user said which columns hold the positions.
    """
    if detect_format(path) is not None:
        return True
    try:
        from napari_nucleus_ai.localizations.detect import looks_like_table
        from napari_nucleus_ai.localizations.options import reading_defaults

        return bool(reading_defaults().get("mapping")) and looks_like_table(path)
    except Exception:  # noqa: BLE001 - a sniffer never raises
        return False


def reader_name(fmt: str) -> str:
    """``module:function`` of the reader of format ``fmt`` (what ``info --json`` reports)."""
    return f"{__name__}.{READERS[fmt]}"


def read_localizations(path, mapping: dict | None = None, format: str | None = None, **options):
    """Read a localization file into a normalised :class:`LocalizationTable`.

    Parameters
    ----------
    path : path-like
    mapping : dict, optional
        ``{"x_nm": column, "y_nm": column, ...}`` for tables whose columns are not
        recognised; forces the generic delimited-table reader. Defaults to the mapping
        of :func:`.options.reading_options` (``--columns``) when one is in force.
    format : str, optional
        Skip detection (one of :data:`FORMATS`).
    **options
        ``pixel_size_nm`` (camera pixel for files in pixels without metadata),
        ``scale_nm`` (generic tables: multiplier to nm), ``prefer_corrected``
        (N-STORM: use ``Xc/Yc``, default True), ``allow_empty``.

    Raises
    ------
    InputError
        One line naming the file and the problem.
    """
    from napari_nucleus_ai.core.files import check_readable
    from napari_nucleus_ai.localizations.detect import is_gzip
    from napari_nucleus_ai.localizations.options import reading_defaults

    check_readable(path)
    defaults = reading_defaults()
    if (
        mapping is None
        and defaults.get("mapping")
        and (format or detect_format(path)) not in BINARY_FORMATS  # --columns: text tables
    ):
        mapping = defaults["mapping"]
    _default_pixel(options, defaults)
    if is_gzip(path):
        from napari_nucleus_ai.localizations.compressed import decompressed

        fmt = format or detect_format(path)
        with decompressed(path) as plain:
            try:
                table = read_localizations(plain, mapping=mapping, format=fmt, **options)
            except InputError as e:
                raise InputError(path, e.problem) from e
        table.path = os.fspath(path)
        table.metadata["compression"] = "gzip"
        return table
    fmt = "csv" if mapping else (format or detect_format(path))
    if fmt is None and mapping is None:
        from napari_nucleus_ai.localizations.detect import looks_like_table

        if not looks_like_table(path):
            raise InputError(path, "not a localization table in any known format")
        fmt = "csv"  # a table without known x/y columns: the generic reader says which it has
    reader = _reader(fmt)
    try:
        if mapping:
            return reader(path, mapping=mapping, **options)
        return reader(path, **options)
    except InputError:
        raise
    except (
        OSError,
        KeyError,
        ValueError,
        IndexError,
        TypeError,
        RuntimeError,
        AttributeError,
    ) as e:  # library errors on malformed content become one line naming the file
        raise InputError(
            path, f"cannot read as {fmt} ({e.__class__.__name__}: {' '.join(str(e).split())[:160]})"
        ) from e


def _default_pixel(options: dict, defaults: dict) -> None:
    """The run's camera pixel (``--camera-pixel``) where the call gives none."""
    if options.get("pixel_size_nm") is None and defaults.get("pixel_size_nm"):
        options["pixel_size_nm"] = defaults["pixel_size_nm"]


#: formats whose reader also summarises positions without pandas (``info``)
POSITION_READERS = {
    "thunderstorm": "thunderstorm:read_positions",
    "nstorm": "nstorm:read_positions",
}


def read_positions(path, format: str | None = None, **options):
    """Rows kept, rows dropped and bounds of a file's positions, and its columns.

    What :func:`describe` prints, without building a table: ThunderSTORM and N-STORM
    files (not compressed) are summarised from their position columns alone
    (:mod:`.positions`, no pandas); anything the summary cannot settle (a missing
    library, a column that is not numeric, no row kept, a bad value) is read by
    :func:`read_localizations` with ``positions_only``, which says what is wrong.

    Returns
    -------
    PositionSummary or LocalizationTable
        Either answers ``len``, ``format``, ``n_dropped``, ``metadata["columns"]``
        and ``bounds_nm()``.
    """
    from napari_nucleus_ai.core.files import check_readable
    from napari_nucleus_ai.localizations.detect import is_gzip
    from napari_nucleus_ai.localizations.options import reading_defaults

    check_readable(path)
    fmt = format or detect_format(path)
    _default_pixel(options, reading_defaults())
    if fmt in POSITION_READERS and not is_gzip(path):
        import importlib

        module, function = POSITION_READERS[fmt].split(":")
        summarise = getattr(importlib.import_module(f"{__name__}.{module}"), function)
        try:
            summary = summarise(path, **options)
        except InputError:
            raise
        except Exception:  # noqa: BLE001 - the table reader names the problem
            summary = None
        if summary is not None:
            return summary
    return read_localizations(path, format=fmt, positions_only=True, **options)


def describe(path, **options) -> dict:
    """What ``napari-nucleus-ai info FILE --json`` prints for a localization file.

    ``{"kind": "localizations", "format", "count" (kept), "n_dropped", "columns",
    "channels", "bounds_nm": {"x": [min, max], "y": [...], ("z")}}``.
    """
    fmt = detect_format(path)
    from napari_nucleus_ai.localizations.options import reading_defaults

    fast = (
        fmt in POSITION_READERS
        and "mapping" not in options
        and not reading_defaults().get("mapping")  # --columns reads with the generic reader
    )
    table = (
        read_positions(path, format=fmt, **options) if fast else read_localizations(path, **options)
    )
    if fast:
        columns = table.metadata["columns"]
        channels = None
    else:
        from napari_nucleus_ai.localizations.table import standard_columns

        columns = standard_columns(table.data)
        channels = table.channels
    info = {
        "kind": "localizations",
        "format": table.format,
        "reader": reader_name("csv" if table.metadata.get("mapping_given") else table.format),
        "count": len(table),
        "n_dropped": table.n_dropped,
        "columns": columns,
        "bounds_nm": table.bounds_nm(),
    }
    if channels is not None:
        info["channels"] = channels
    for key in ("pixel_size_nm", "pixel_size_source", "compression", "tracked", "n_tracks"):
        if key in table.metadata:
            info[key] = table.metadata[key]
    return info


def read_layers(path, **options) -> list:
    """napari layer data tuples: one density image per channel (+ Points on request).

    Options: ``pixel_size_nm`` (display pixel, default 10), ``method``, ``sigma_nm``,
    ``z_mode``, ``points`` (``"auto"``/True/False) and the reading options of
    :func:`read_localizations` (``camera_pixel_nm`` maps to its ``pixel_size_nm``).
    """
    from napari_nucleus_ai.localizations.layers import table_layers

    read_opts = {
        k: options.pop(k) for k in ("mapping", "scale_nm", "prefer_corrected") if k in options
    }
    if "camera_pixel_nm" in options:
        read_opts["pixel_size_nm"] = options.pop("camera_pixel_nm")
    table = read_localizations(path, **read_opts)
    return table_layers(table, **options)
