"""Options shared by every command that reads localization files.

``--camera-pixel NM``
    Camera pixel for positions in pixels when the file does not record it (Insight3
    ``.bin``, Picasso without metadata, ThunderSTORM ``px`` columns, tables mapped with
    ``--columns`` whose column names carry no unit).
``--columns x=COL,y=COL[,z=..,frame=..,sigma=..,photons=..,channel=..]``
    Which columns of a text table hold what (``sigma``: the localization precision,
    nm, the width of each localization's Gaussian in ``--method precision``).

:func:`add_localization_options` adds both flags; :func:`localization_options` (entered
by :func:`napari_nucleus_ai.cli.main` around every command) makes them the reading
defaults of the whole run, including Dask workers and files read deep inside
segmentation, training and prediction.
"""

from __future__ import annotations

from contextlib import contextmanager


def add_localization_options(p) -> None:
    """Add ``--camera-pixel`` and ``--columns`` to a subcommand's parser."""
    g = p.add_argument_group("localization tables")
    g.add_argument(
        "--camera-pixel",
        type=float,
        default=None,
        metavar="NM",
        help="camera pixel in nm for localization files in pixels that do not record it "
        "(Insight3 .bin default 160; px columns; --columns tables without units)",
    )
    g.add_argument(
        "--columns",
        default=None,
        metavar="x=COL,y=COL[,z=..,frame=..,sigma=..,photons=..]",
        help="columns of a localization table its names do not reveal "
        "(nm unless --camera-pixel is given or the column name carries a unit)",
    )


def reading_kwargs(args) -> dict:
    """``{"pixel_size_nm", "mapping"}`` from the parsed flags (only those given)."""
    from napari_nucleus_ai.localizations.options import parse_columns

    out = {}
    if getattr(args, "camera_pixel", None) is not None:
        out["pixel_size_nm"] = float(args.camera_pixel)
    mapping = parse_columns(getattr(args, "columns", None))
    if mapping:
        out["mapping"] = mapping
    return out


@contextmanager
def localization_options(args):
    """The flags of ``args`` as reading defaults for the block (a no-op without them)."""
    if getattr(args, "camera_pixel", None) is None and not getattr(args, "columns", None):
        yield {}
        return
    from napari_nucleus_ai.localizations.options import reading_options

    kw = reading_kwargs(args)
    with reading_options(kw.get("pixel_size_nm"), kw.get("mapping")) as value:
        yield value
